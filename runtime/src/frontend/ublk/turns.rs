//! The queue thread's turns: each return from its io_uring wait is one
//! (libublk then runs every task the completions woke). A task may wait
//! for the next turn, to let requests still on their way join it
//! (`gather.rs`), but only while I/O of this queue is in flight: only a
//! completion (or a new request from the kernel, which may never come)
//! ends a turn, so with nothing in flight the next one might never come.
//! For the same reason the last I/O in flight ending ends the turn too.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Turns {
    now: Cell<u64>,
    waiting: RefCell<Vec<Waker>>,
    in_flight: Cell<usize>,
}

impl Turns {
    /// The ring's wait returned, or the last I/O in flight ended: wake
    /// whoever waits for this turn (they run after the tasks the
    /// completions woke).
    pub fn next(&self) {
        self.now.set(self.now.get().wrapping_add(1));
        for w in self.waiting.take() {
            w.wake();
        }
    }

    /// Counts as I/O in flight on this queue's ring (leg operations, a
    /// request with the pool) while the guard lives.
    pub fn busy(&self) -> Busy<'_> {
        self.in_flight.set(self.in_flight.get() + 1);
        Busy(self)
    }

    /// Whether a next turn is sure to come.
    pub fn in_flight(&self) -> bool {
        self.in_flight.get() > 0
    }

    /// The next turn (call only while `in_flight`).
    pub fn wait(&self) -> NextTurn<'_> {
        NextTurn { turns: self, at: self.now.get() }
    }
}

pub struct Busy<'a>(&'a Turns);

impl Drop for Busy<'_> {
    /// The last I/O in flight ending ends the turn too: a task that saw
    /// I/O in flight and waits for the next turn would otherwise wait for
    /// a completion that cannot come (the queue idle, the ring asleep
    /// until its idle timeout). Woken, it finds nothing in flight and
    /// stops waiting.
    fn drop(&mut self) {
        let left = self.0.in_flight.get().saturating_sub(1);
        self.0.in_flight.set(left);
        if left == 0 {
            self.0.next();
        }
    }
}

pub struct NextTurn<'a> {
    turns: &'a Turns,
    at: u64,
}

impl Future for NextTurn<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.turns.now.get() != self.at {
            return Poll::Ready(());
        }
        self.turns.waiting.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_at_the_next_turn_and_busy_counts_while_it_lives() {
        let turns = Turns::default();
        assert!(!turns.in_flight());
        let busy = turns.busy();
        assert!(turns.in_flight());
        let mut wait = std::pin::pin!(turns.wait());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        turns.next();
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        drop(busy);
        assert!(!turns.in_flight());
    }

    #[test]
    fn the_last_io_in_flight_ending_ends_the_turn_of_whoever_waits() {
        // A leader saw I/O in flight and waits; that I/O ends in the same
        // turn (its task runs after the leader's): no completion will
        // come, so the wait must end now, not at the ring's idle timeout.
        let turns = Turns::default();
        let (first, second) = (turns.busy(), turns.busy());
        let mut wait = std::pin::pin!(turns.wait());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        drop(first);
        assert!(wait.as_mut().poll(&mut cx).is_pending(), "I/O is still in flight: its completion will end the turn");
        drop(second);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert!(!turns.in_flight());
    }
}
