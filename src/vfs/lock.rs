//! SQLite's file locks among the connections of one process, as the unix VFS keeps them.
//!
//! Connections in other processes or hosts do not see these locks: their writes meet at the
//! conditional PUT of the commit record instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Database;

/// SQLite's lock levels (SQLITE_LOCK_NONE ... SQLITE_LOCK_EXCLUSIVE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockLevel {
    None = 0,
    Shared = 1,
    Reserved = 2,
    Pending = 3,
    Exclusive = 4,
}

impl LockLevel {
    pub fn from_raw(raw: i32) -> Option<LockLevel> {
        Some(match raw {
            0 => LockLevel::None,
            1 => LockLevel::Shared,
            2 => LockLevel::Reserved,
            3 => LockLevel::Pending,
            4 => LockLevel::Exclusive,
            _ => return None,
        })
    }
}

/// Who holds what on one database; a holder is a file handle's id.
#[derive(Default, Debug)]
pub struct LockTable {
    shared: HashSet<u64>,
    reserved: Option<u64>,
    pending: Option<u64>,
    exclusive: Option<u64>,
}

/// The lock could not be had now (SQLITE_BUSY); SQLite's busy handler may retry.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

fn held_by_other(slot: Option<u64>, holder: u64) -> bool {
    slot.is_some_and(|owner| owner != holder)
}

impl LockTable {
    /// Raises `holder` to `level`. SQLite only asks for SHARED from NONE and for RESERVED or
    /// EXCLUSIVE from SHARED or above.
    pub fn lock(&mut self, holder: u64, level: LockLevel) -> Result<(), Busy> {
        match level {
            LockLevel::None => Ok(()),
            LockLevel::Shared => {
                if held_by_other(self.pending, holder) || held_by_other(self.exclusive, holder) {
                    return Err(Busy);
                }
                self.shared.insert(holder);
                Ok(())
            }
            LockLevel::Reserved => {
                if held_by_other(self.reserved, holder)
                    || held_by_other(self.pending, holder)
                    || held_by_other(self.exclusive, holder)
                {
                    return Err(Busy);
                }
                self.reserved = Some(holder);
                Ok(())
            }
            LockLevel::Pending | LockLevel::Exclusive => {
                if held_by_other(self.pending, holder) || held_by_other(self.exclusive, holder) {
                    return Err(Busy);
                }
                // PENDING keeps new readers out while the writer waits for the old ones.
                self.pending = Some(holder);
                if level == LockLevel::Pending {
                    return Ok(());
                }
                if self.shared.iter().any(|other| *other != holder) {
                    return Err(Busy);
                }
                self.exclusive = Some(holder);
                Ok(())
            }
        }
    }

    /// Lowers `holder` to `level` (SHARED or NONE).
    pub fn unlock(&mut self, holder: u64, level: LockLevel) {
        for slot in [&mut self.reserved, &mut self.pending, &mut self.exclusive] {
            if *slot == Some(holder) {
                *slot = None;
            }
        }
        if level == LockLevel::None {
            self.shared.remove(&holder);
        }
    }

    /// Whether any handle holds RESERVED or more.
    pub fn reserved(&self) -> bool {
        self.reserved.is_some() || self.pending.is_some() || self.exclusive.is_some()
    }
}

/// One file's place in its database's [`LockTable`]: whatever it holds is let go when it is
/// dropped, however the file goes away.
pub struct Holder {
    database: Arc<Database>,
    id: u64,
}

impl Holder {
    pub fn new(database: Arc<Database>) -> Holder {
        static IDS: AtomicU64 = AtomicU64::new(1);
        Holder {
            database,
            id: IDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn lock(&self, level: LockLevel) -> Result<(), Busy> {
        self.database.locks.lock().lock(self.id, level)
    }

    pub fn unlock(&self, level: LockLevel) {
        self.database.locks.lock().unlock(self.id, level);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.unlock(LockLevel::None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_many_readers() {
        let mut table = LockTable::default();
        table.lock(1, LockLevel::Shared).expect("reader 1");
        table.lock(2, LockLevel::Shared).expect("reader 2");
        table.lock(1, LockLevel::Reserved).expect("writer");
        assert_eq!(table.lock(2, LockLevel::Reserved), Err(Busy));
        assert!(table.reserved());
        // The writer waits for reader 2; meanwhile no new reader gets in.
        assert_eq!(table.lock(1, LockLevel::Exclusive), Err(Busy));
        assert_eq!(table.lock(3, LockLevel::Shared), Err(Busy));
        table.unlock(2, LockLevel::None);
        table.lock(1, LockLevel::Exclusive).expect("exclusive");
        table.unlock(1, LockLevel::Shared);
        assert!(!table.reserved());
        table.lock(3, LockLevel::Shared).expect("reader 3");
    }
}
