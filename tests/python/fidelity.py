"""The differential fidelity workloads: generated SQL run through s3vfs and through a local
file with the same SQLite (apsw's), whose outputs must be identical statement by statement.

A workload is a list of steps made from one seed: schema changes, indexes, rowid and WITHOUT
ROWID tables, overflow pages (large blobs), FTS5, JSON, R-tree, window functions, CTEs,
triggers, views, temp tables, transactions with savepoints and ROLLBACK TO, VACUUM and VACUUM
INTO, ATTACH with a transaction over both databases, exclusive locking, reopening the
database, and integrity checks. With journal_mode=OFF it leaves out whatever would roll back (ROLLBACK, ROLLBACK TO,
statements that fail half-way), whose effect SQLite leaves undefined in that mode.

Imported by tests/python/test_fidelity.py; `python3 tests/python/fidelity.py SEED PAGE
JOURNAL SYNC` prints a workload's statements.
"""
import hashlib
import random
import sys

PAGE_SIZES = (512, 4096, 65536)
JOURNAL_MODES = ("delete", "truncate", "persist", "memory", "off")
SYNCHRONOUS = ("off", "normal", "full")

WORDS = (
    "amber basalt cobalt dune ember fjord garnet harbor indigo jasper kelp lagoon meadow "
    "nectar onyx prairie quartz river saffron tundra umber valley willow xenon yarrow zephyr"
).split()

# The placeholder of the attached database's name; each side puts its own there.
AUX = "{AUX}"

# A step: ("sql", text), ("reopen",), ("vacuum_into", number) or ("digest", schema).


class Workload:
    def __init__(self, seed, page_size, journal_mode, synchronous, statements=70):
        self.rng = random.Random(f"{seed}-{page_size}-{journal_mode}-{synchronous}")
        self.page_size = page_size
        self.journal_mode = journal_mode
        self.synchronous = synchronous
        self.can_roll_back = journal_mode != "off"
        self.target = statements
        self.steps = []
        self.tables = {}  # name -> {"rowid": bool, "next": int, "columns": [...]}
        self.counter = 0
        self.fts = False
        self.rtree = 0
        self.views = []
        self.triggers = []
        self.audit = False
        self.into = 0

    # -- building -------------------------------------------------------------------------

    def sql(self, text):
        self.steps.append(("sql", text))

    def settings(self):
        return [
            f"PRAGMA journal_mode={self.journal_mode}",
            f"PRAGMA synchronous={self.synchronous}",
            "PRAGMA cache_size=16",
        ]

    def build(self):
        self.sql(f"PRAGMA page_size={self.page_size}")
        for text in self.settings():
            self.sql(text)
        self.sql("PRAGMA synchronous")
        self.create_table(rowid=True)
        self.create_table(rowid=False)
        choices = [
            (self.create_table, 3),
            (self.insert, 14),
            (self.insert_large, 4),
            (self.update, 6),
            (self.delete, 4),
            (self.upsert, 3),
            (self.duplicate, 2),
            (self.index, 3),
            (self.query, 14),
            (self.fts_step, 5),
            (self.rtree_step, 4),
            (self.view_step, 3),
            (self.trigger_step, 2),
            (self.temp_table, 2),
            (self.transaction, 6),
            (self.alter, 2),
            (self.drop_table, 1),
            (self.vacuum, 2),
            (self.vacuum_into, 2),
            (self.attach, 2),
            (self.reopen, 2),
            (self.locking, 2),
            (self.check, 3),
        ]
        functions = [function for function, _ in choices]
        weights = [weight for _, weight in choices]
        while len(self.steps) < self.target:
            self.rng.choices(functions, weights)[0]()
        self.check()
        self.steps.append(("digest", "main"))
        self.reopen()
        self.steps.append(("digest", "main"))
        return self.steps

    def table(self, rowid=None):
        names = [
            name for name, table in sorted(self.tables.items())
            if rowid is None or table["rowid"] == rowid
        ]
        return self.rng.choice(names) if names else None

    def create_table(self, rowid=None):
        rowid = self.rng.random() < 0.6 if rowid is None else rowid
        self.counter += 1
        if rowid:
            name = f"t{self.counter}"
            self.sql(f"CREATE TABLE {name}(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c BLOB, d REAL)")
        else:
            name = f"w{self.counter}"
            self.sql(f"CREATE TABLE {name}(k TEXT PRIMARY KEY, a INTEGER, b TEXT, c BLOB) WITHOUT ROWID")
        self.tables[name] = {"rowid": rowid, "next": 1}

    def rows(self, name, count, blob):
        table = self.tables[name]
        start = table["next"]
        table["next"] += count
        end = start + count - 1
        k, m = self.rng.randint(3, 97), self.rng.randint(5, 1000)
        word = self.rng.choice(WORDS)
        series = f"WITH RECURSIVE s(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM s WHERE i < {end}) "
        if table["rowid"]:
            return (
                f"{series}INSERT INTO {name}(id, a, b, c, d) "
                f"SELECT i, i * {k} % {m}, printf('{word}-%d', i), {blob}, i / {k}.0 FROM s"
            )
        return (
            f"{series}INSERT INTO {name}(k, a, b, c) "
            f"SELECT printf('k%08d', i), i * {k} % {m}, printf('{word}-%d', i), {blob} FROM s"
        )

    def insert(self):
        name = self.table()
        blob = self.rng.choice(
            ["NULL", "zeroblob(i % 40)", "CAST(printf('%.100d', i) AS BLOB)", "X''"]
        )
        self.sql(self.rows(name, self.rng.randint(1, 250), blob))

    def insert_large(self):
        """Rows whose blobs span overflow pages, and often several blocks."""
        name = self.table()
        size = self.rng.choice([3000, 20000, 70000, 150000])
        self.sql(self.rows(name, self.rng.randint(1, 2), f"CAST(printf('%.{size}d', i) AS BLOB)"))

    def key_column(self, name):
        return "id" if self.tables[name]["rowid"] else "k"

    def update(self):
        name = self.table()
        m = self.rng.randint(2, 9)
        r = self.rng.randrange(m)
        if self.rng.random() < 0.3:
            size = self.rng.choice([500, 3000, 9000])
            self.sql(
                f"UPDATE {name} SET c = CAST(printf('%.{size}d', a) AS BLOB) "
                f"WHERE a % {m * 4} = {r}"
            )
        else:
            self.sql(
                f"UPDATE {name} SET a = a + {self.rng.randint(1, 50)}, "
                f"b = b || '{self.rng.choice(WORDS)}' WHERE a % {m} = {r}"
            )

    def delete(self):
        name = self.table()
        m = self.rng.randint(2, 7)
        self.sql(f"DELETE FROM {name} WHERE a % {m} = {self.rng.randrange(m)}")

    def upsert(self):
        name = self.table(rowid=True)
        if name is None:
            return
        key = self.rng.randint(1, max(1, self.tables[name]["next"] - 1))
        verb = self.rng.choice(["INSERT OR REPLACE", "INSERT OR IGNORE", "INSERT"])
        conflict = " ON CONFLICT(id) DO UPDATE SET a = a + 1000, b = excluded.b" if verb == "INSERT" else ""
        self.sql(f"{verb} INTO {name}(id, a, b) VALUES ({key}, {key * 7}, 'upsert-{key}'){conflict}")
        self.tables[name]["next"] = max(self.tables[name]["next"], key + 1)

    def duplicate(self):
        """A statement that fails half-way with a constraint error (rolled back by SQLite)."""
        name = self.table(rowid=True)
        if name is None or not self.can_roll_back:
            return
        table = self.tables[name]
        start = table["next"]
        table["next"] += 31
        self.sql(
            f"WITH RECURSIVE s(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM s WHERE i < {start + 30}) "
            f"INSERT INTO {name}(id, a, b) SELECT CASE WHEN i = {start + 20} THEN 1 ELSE i END, i, 'dup' FROM s"
        )

    def index(self):
        name = self.table()
        if self.rng.random() < 0.75:
            self.counter += 1
            columns = self.rng.choice(["a", "b", "a, b", "b DESC, a"])
            unique = ""
            self.sql(f"CREATE {unique}INDEX i{self.counter} ON {name}({columns})")
        else:
            self.sql(f"DROP INDEX IF EXISTS i{self.rng.randint(1, max(1, self.counter))}")

    def query(self):
        name = self.table()
        key = self.key_column(name)
        limit = self.rng.randint(5, 40)
        m = self.rng.randint(2, 11)
        queries = [
            f"SELECT count(*), sum(a), total(length(c)), max(b) FROM {name}",
            f"SELECT {key}, a, b, length(c), hex(substr(c, -3)) FROM {name} ORDER BY {key} LIMIT {limit}",
            f"SELECT a % {m} AS g, count(*), sum(a), min(b) FROM {name} GROUP BY g ORDER BY g",
            f"SELECT {key}, sum(a) OVER (ORDER BY {key} ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), "
            f"rank() OVER (PARTITION BY a % {m} ORDER BY {key}), lag(b) OVER (ORDER BY {key}) "
            f"FROM {name} ORDER BY {key} LIMIT {limit}",
            f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {m}), "
            f"c AS (SELECT a % {m} AS k, count(*) AS n FROM {name} GROUP BY 1) "
            f"SELECT g.n, coalesce(c.n, 0) FROM g LEFT JOIN c ON c.k = g.n ORDER BY g.n",
            f"SELECT json_group_array(json_object('key', {key}, 'a', a, 'b', b)) FROM "
            f"(SELECT {key}, a, b FROM {name} ORDER BY {key} LIMIT {limit})",
            f"SELECT json_object('n', count(*), 'a', json_group_array(a) ->> '$[0]') ->> '$.n', "
            f"json_extract(json_array(min(a), max(a)), '$[1]') FROM {name}",
            f"SELECT {key} FROM {name} WHERE b LIKE '%{self.rng.choice(WORDS)[:3]}%' ORDER BY {key} LIMIT {limit}",
            f"SELECT count(*) FROM {name} AS x JOIN {name} AS y ON x.a = y.a",
            "PRAGMA page_count",
            "PRAGMA freelist_count",
        ]
        self.sql(self.rng.choice(queries))

    def fts_step(self):
        if not self.fts:
            self.sql("CREATE VIRTUAL TABLE doc USING fts5(title, body)")
            self.fts = True
        roll = self.rng.random()
        if roll < 0.5:
            count = self.rng.randint(1, 60)
            words = self.rng.sample(WORDS, 6)
            self.sql(
                f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {count}) "
                f"INSERT INTO doc(title, body) SELECT '{words[0]} ' || i, "
                f"'{words[1]} {words[2]} ' || (i % 7) || ' {words[3]} ' || "
                f"CASE WHEN i % 3 = 0 THEN '{words[4]}' ELSE '{words[5]}' END || ' ' || printf('%.{self.rng.choice([10, 900])}d', i) "
                "FROM s"
            )
        elif roll < 0.85:
            first, second = self.rng.sample(WORDS, 2)
            self.sql(
                self.rng.choice(
                    [
                        f"SELECT rowid, title FROM doc WHERE doc MATCH '{first}' ORDER BY rowid LIMIT 25",
                        f"SELECT count(*) FROM doc WHERE doc MATCH '{first} OR {second}'",
                        f"SELECT rowid, highlight(doc, 1, '[', ']') FROM doc WHERE doc MATCH 'body:{first}' "
                        "ORDER BY rank, rowid LIMIT 5",
                    ]
                )
            )
        elif roll < 0.93:
            self.sql("INSERT INTO doc(doc) VALUES ('optimize')")
        else:
            self.sql(f"DELETE FROM doc WHERE rowid % {self.rng.randint(2, 5)} = 0")

    def rtree_step(self):
        if not self.rtree:
            self.sql("CREATE VIRTUAL TABLE box USING rtree(id, minx, maxx, miny, maxy)")
            self.rtree = 1
        if self.rng.random() < 0.5:
            start, count = self.rtree, self.rng.randint(1, 150)
            self.rtree += count
            w, h = self.rng.randint(1, 20), self.rng.randint(1, 20)
            self.sql(
                f"WITH RECURSIVE s(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM s WHERE i < {start + count - 1}) "
                f"INSERT INTO box SELECT i, i % 100, i % 100 + {w}, i % 37, i % 37 + {h} FROM s"
            )
        else:
            x, y = self.rng.randint(0, 110), self.rng.randint(0, 50)
            self.sql(
                f"SELECT id FROM box WHERE minx <= {x} AND maxx >= {x} AND miny <= {y} AND maxy >= {y} ORDER BY id"
            )

    def view_step(self):
        name = self.table()
        view = f"v_{name}"
        if view not in self.views:
            self.sql(f"CREATE VIEW {view} AS SELECT a % 7 AS g, count(*) AS n, sum(a) AS s FROM {name} GROUP BY 1")
            self.views.append(view)
        else:
            self.sql(f"SELECT * FROM {view} ORDER BY g")

    def trigger_step(self):
        name = self.table(rowid=True)
        if name is None:
            return
        if not self.audit:
            self.sql("CREATE TABLE audit(n INTEGER PRIMARY KEY, tbl TEXT, rid INTEGER, what TEXT)")
            self.audit = True
        trigger = f"tr_{name}_{len(self.triggers)}"
        event = self.rng.choice(["INSERT", "UPDATE", "DELETE"])
        row = "old" if event == "DELETE" else "new"
        self.sql(
            f"CREATE TRIGGER {trigger} AFTER {event} ON {name} BEGIN "
            f"INSERT INTO audit(tbl, rid, what) VALUES ('{name}', {row}.id, '{event}'); END"
        )
        self.triggers.append(trigger)

    def temp_table(self):
        name = self.table()
        self.sql("DROP TABLE IF EXISTS temp.scratch")
        self.sql(f"CREATE TEMP TABLE scratch AS SELECT a, b FROM {name} WHERE a % 4 = 0")
        self.sql(f"SELECT count(*), sum(s.a) FROM scratch AS s JOIN {name} AS t ON t.a = s.a")

    def dml(self):
        self.rng.choice([self.insert, self.insert, self.update, self.delete, self.upsert])()

    def transaction(self):
        self.sql(self.rng.choice(["BEGIN", "BEGIN IMMEDIATE"]))
        for _ in range(self.rng.randint(1, 4)):
            self.dml()
        if self.rng.random() < 0.5:
            self.sql("SAVEPOINT sp")
            for _ in range(self.rng.randint(1, 3)):
                self.dml()
            self.query()
            if self.can_roll_back and self.rng.random() < 0.6:
                self.sql("ROLLBACK TO sp")
            self.sql("RELEASE sp")
        self.query()
        if self.can_roll_back and self.rng.random() < 0.3:
            self.sql("ROLLBACK")
        else:
            self.sql("COMMIT")

    def alter(self):
        name = self.table()
        self.counter += 1
        self.sql(f"ALTER TABLE {name} ADD COLUMN e{self.counter} TEXT DEFAULT 'added'")

    def drop_table(self):
        if len(self.tables) <= 2:
            return
        name = self.table()
        del self.tables[name]
        self.views = [view for view in self.views if view != f"v_{name}"]
        self.triggers = [trigger for trigger in self.triggers if not trigger.startswith(f"tr_{name}_")]
        self.sql(f"DROP VIEW IF EXISTS v_{name}")
        self.sql(f"DROP TABLE {name}")

    def vacuum(self):
        self.sql("VACUUM")

    def vacuum_into(self):
        self.into += 1
        self.steps.append(("vacuum_into", self.into))

    def attach(self):
        self.sql(f"ATTACH {AUX} AS aux")
        self.sql(f"PRAGMA aux.journal_mode={self.journal_mode}")
        self.sql("CREATE TABLE IF NOT EXISTS aux.x(id INTEGER PRIMARY KEY, v TEXT, w BLOB)")
        name = self.table()
        key = self.key_column(name)
        self.sql("BEGIN")
        self.sql(f"INSERT INTO aux.x(v, w) SELECT b, c FROM main.{name} WHERE a % 3 = 0 ORDER BY {key}")
        self.dml()
        self.sql("COMMIT")
        self.sql(f"SELECT count(*), sum(length(x.w)), max(x.v) FROM aux.x AS x JOIN main.{name} AS t ON t.b = x.v")
        self.steps.append(("digest", "aux"))
        self.sql("DETACH aux")

    def reopen(self):
        self.steps.append(("reopen",))

    def locking(self):
        """Exclusive locking: SQLite then moves the change counter only once per lock."""
        self.sql(f"PRAGMA locking_mode={self.rng.choice(['EXCLUSIVE', 'EXCLUSIVE', 'NORMAL'])}")

    def check(self):
        self.sql(self.rng.choice(["PRAGMA integrity_check", "PRAGMA quick_check"]))


def digest_rows(rows):
    """A short, order-sensitive digest of query rows."""
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def workload(seed, page_size, journal_mode, synchronous, statements=70):
    return Workload(seed, page_size, journal_mode, synchronous, statements)


if __name__ == "__main__":
    seed, page, journal, sync = sys.argv[1:5]
    built = workload(seed, int(page), journal, sync)
    for step in built.build():
        print(step[1] if step[0] == "sql" else step)
