//! A file's locks: SQLite's levels among the connections of the process, and the freshness
//! check that pins the newest version when a read transaction starts.

use super::*;

impl DbFile {
    pub fn lock(&mut self, level: LockLevel) -> Result<std::result::Result<(), Busy>> {
        if level <= self.level {
            return Ok(Ok(()));
        }
        if self.read_only.is_some() {
            // A past version never changes: no check, and no write lock.
            if level >= LockLevel::Reserved {
                self.refuse_writes()?;
            }
            self.level = level;
            return Ok(Ok(()));
        }
        if let Err(busy) = self.holder.lock(level) {
            return Ok(Err(busy));
        }
        if self.level == LockLevel::None {
            // A read transaction starts: pin the newest committed version.
            match self.database.refresh_checked(self.staleness) {
                Ok((snapshot, checked)) => {
                    self.snapshot = snapshot;
                    self.checked = checked;
                }
                Err(error) => {
                    self.holder.unlock(LockLevel::None);
                    return Err(error);
                }
            }
        }
        self.level = level;
        Ok(Ok(()))
    }

    pub fn unlock(&mut self, level: LockLevel) {
        if level >= self.level {
            return;
        }
        if level <= LockLevel::Shared {
            // Whatever was not committed by a sync is a rollback's leftover.
            self.txn = None;
            self.doomed = false;
        }
        self.holder.unlock(level);
        self.level = level;
    }

    pub fn reserved(&self) -> bool {
        self.read_only.is_none() && self.database.locks.lock().reserved()
    }
}
