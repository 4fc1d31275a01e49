//! The delivery mark of a queue's cursor (see the module docs of
//! `queue`): how far a stored state says deliveries may have gone.

/// How far beyond the next message to deliver a stored mark reaches.
pub(super) const MARK_AHEAD: i64 = 1024;

/// A stored state's mark: ahead of the deliveries (while the cursor runs),
/// or exactly what was delivered (when it stops).
#[derive(Clone, Copy)]
pub(super) enum Mark {
    Ahead,
    Exact,
}

/// The mark a stored state carries: `current` is the last stored mark,
/// `base` the next offset to deliver, `recovered` the mark of the run
/// before.
///
/// An exact mark covers only what this run delivered (all of it is in the
/// state's `delivered` list), but offsets the run before may have
/// delivered and this one has not read again yet are known only through
/// `recovered`: the mark never drops below it, or they would come back
/// without `redelivered` after the next start.
pub(super) fn stored_mark(kind: Mark, current: i64, base: i64, floor: i64, recovered: i64) -> i64 {
    match kind {
        Mark::Ahead => current.max(base + MARK_AHEAD),
        Mark::Exact => floor.max(recovered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_cursor_marks_ahead_of_its_deliveries_and_never_back() {
        assert_eq!(stored_mark(Mark::Ahead, 0, 10, 0, 0), 10 + MARK_AHEAD);
        assert_eq!(stored_mark(Mark::Ahead, 5_000, 10, 0, 0), 5_000);
    }

    #[test]
    fn a_stopping_cursor_keeps_what_the_run_before_may_have_delivered() {
        // Nothing recovered: what was delivered is listed, the mark is the
        // floor.
        assert_eq!(stored_mark(Mark::Exact, 2_000, 300, 100, 0), 100);
        // The run before marked up to 1_500 and crashed; this run read up
        // to 300 only: 300..1_500 may have been delivered then.
        assert_eq!(stored_mark(Mark::Exact, 2_000, 300, 100, 1_500), 1_500);
    }
}
