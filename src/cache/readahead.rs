//! Read-ahead for sequential readers: which blocks past a missed one are worth fetching with
//! it, as a window that grows while reads move forward block by block.

use crate::units::BlockIndex;

/// At most this many blocks are fetched ahead of a sequential reader.
pub const MAX_READ_AHEAD: u64 = 32;

/// Detects sequential reading: while reads move forward block by block, the window of blocks
/// fetched together with a missed block doubles, up to [`MAX_READ_AHEAD`]; a jump resets it.
#[derive(Default)]
pub struct ReadAhead {
    last: Option<BlockIndex>,
    window: u64,
}

impl ReadAhead {
    /// Records a read of blocks `first..=last`; returns how many blocks past `last` are worth
    /// fetching with it, at most `limit`.
    pub fn record(&mut self, first: BlockIndex, last: BlockIndex, limit: u64) -> u64 {
        self.window = match self.last {
            Some(previous) if first.0 == previous.0 + 1 => (self.window * 2).max(2).min(limit),
            Some(previous) if first.0 == previous.0 => self.window,
            _ => 0,
        };
        self.last = Some(last);
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_doubles_while_reads_move_forward_and_resets_on_a_jump() {
        let mut read_ahead = ReadAhead::default();
        let windows: Vec<u64> = (0..7)
            .map(|block| read_ahead.record(BlockIndex(block), BlockIndex(block), MAX_READ_AHEAD))
            .collect();
        assert_eq!(windows, vec![0, 2, 4, 8, 16, 32, 32]);
        assert_eq!(
            read_ahead.record(BlockIndex(6), BlockIndex(6), MAX_READ_AHEAD),
            32
        );
        assert_eq!(
            read_ahead.record(BlockIndex(40), BlockIndex(40), MAX_READ_AHEAD),
            0
        );
    }
}
