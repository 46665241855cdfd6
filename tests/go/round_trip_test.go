// The s3vfs extension loaded into mattn/go-sqlite3 through database/sql, against the local S3
// test server: one process writes, a second process (this test binary run again) reads back.
//
//	S3VFS_LIB=$PWD/target/debug/libs3vfs.so GOPROXY=off go test -C tests/go   # or `make test-bindings`
//
// The S3 server's environment must be set: eval "$(scripts/s3-server.sh env)".
package gosqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
)

// roleVariable, when set in the environment, makes this test binary read the database it
// names, print what it found as JSON and exit, instead of running the tests.
const roleVariable = "S3VFS_GO_READ"

func library() string {
	if path := os.Getenv("S3VFS_LIB"); path != "" {
		return path
	}
	path, _ := filepath.Abs("../../target/debug/libs3vfs")
	return path
}

// The README's Go example: a driver that loads the extension into each connection it opens.
func init() {
	sql.Register("sqlite3_s3vfs", &sqlite3.SQLiteDriver{
		Extensions: []string{library()},
	})
}

// open loads the extension through a first connection (":memory:"), which registers the VFS
// for the whole process, then opens the s3vfs database at uri.
func open(uri string) (*sql.DB, error) {
	loader, err := sql.Open("sqlite3_s3vfs", ":memory:")
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	if err := loader.Ping(); err != nil {
		return nil, fmt.Errorf("load %s: %w", library(), err)
	}
	return sql.Open("sqlite3_s3vfs", uri)
}

type contents struct {
	Names   []string `json:"names"`
	Version int64    `json:"version"`
}

func read(db *sql.DB) (contents, error) {
	var found contents
	rows, err := db.Query("SELECT name FROM product ORDER BY id")
	if err != nil {
		return found, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return found, err
		}
		found.Names = append(found.Names, name)
	}
	if err := rows.Err(); err != nil {
		return found, err
	}
	err = db.QueryRow("SELECT json_extract(s3vfs_stats(), '$.version')").Scan(&found.Version)
	return found, err
}

func TestMain(m *testing.M) {
	if uri := os.Getenv(roleVariable); uri != "" {
		db, err := open(uri)
		if err == nil {
			var found contents
			if found, err = read(db); err == nil {
				err = json.NewEncoder(os.Stdout).Encode(found)
			}
			db.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "reader:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestWriteThenReadInANewProcess(t *testing.T) {
	uri := fmt.Sprintf("file:bindings/go-%d-%d.db?vfs=s3vfs&_busy_timeout=5000&bucket=%s",
		os.Getpid(), time.Now().UnixNano(), os.Getenv("S3VFS_BUCKET"))
	db, err := open(uri)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS product(id INTEGER PRIMARY KEY, name TEXT)"); err != nil {
		t.Fatal(err)
	}
	written := []string{"tea", "coffee", "ünïcødé ✓"}
	for _, name := range written {
		if _, err := db.Exec("INSERT INTO product(name) VALUES (?)", name); err != nil {
			t.Fatal(err)
		}
	}
	here, err := read(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(here.Names, written) || here.Version < 4 {
		t.Fatalf("writer read back %+v, want names %q at version >= 4", here, written)
	}

	reader := exec.Command(os.Args[0])
	reader.Env = append(os.Environ(), roleVariable+"="+uri)
	reader.Stderr = os.Stderr
	output, err := reader.Output()
	if err != nil {
		t.Fatalf("reader process: %v", err)
	}
	var there contents
	if err := json.Unmarshal(output, &there); err != nil {
		t.Fatalf("reader printed %q: %v", output, err)
	}
	if !reflect.DeepEqual(there, here) {
		t.Fatalf("a new process read %+v, the writer %+v", there, here)
	}
}
