//! The NBD server's I/O threads: a fixed number, started with the server
//! and shared by every connection. The block devices are synchronous, so a
//! request needs a thread while it is served, but a connection needs none
//! while it waits for its client: connections live on tokio (a task each),
//! and only a request being served holds one of these threads. Not tokio's
//! blocking pool: the array daemon and the control socket use that one, and
//! no number of clients may starve them.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;

/// A request to serve, with what delivers its reply.
pub type Job = Box<dyn FnOnce() + Send>;

pub struct IoPool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl IoPool {
    /// Start `threads` threads, named `nbd-io-N`.
    pub fn start(threads: usize) -> std::io::Result<IoPool> {
        let shared = Arc::new(Shared { queue: Mutex::new(Queue { jobs: VecDeque::new(), closed: false }), ready: Condvar::new() });
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new().name(format!("nbd-io-{i}")).spawn(move || shared.run())?;
        }
        Ok(IoPool { shared })
    }

    /// Queue a job; a free thread takes it. The queue is bounded by the
    /// callers: a connection submits at most its in-flight limit.
    pub fn submit(&self, job: Job) {
        self.shared.queue.lock().jobs.push_back(job);
        self.shared.ready.notify_one();
    }
}

impl Drop for IoPool {
    /// The threads finish the queued jobs, then end (they are not joined:
    /// a job stuck on a device must not hold up a stop).
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Shared {
    fn run(&self) {
        loop {
            let job = {
                let mut q = self.queue.lock();
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        break job;
                    }
                    if q.closed {
                        return;
                    }
                    self.ready.wait(&mut q);
                }
            };
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jobs_run_on_the_named_threads() {
        let pool = IoPool::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let count = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let (tx, count) = (tx.clone(), count.clone());
            pool.submit(Box::new(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(std::thread::current().name().map(str::to_string));
            }));
        }
        for _ in 0..10 {
            let name = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap().unwrap();
            assert!(name.starts_with("nbd-io-"), "{name}");
        }
        assert_eq!(count.load(Ordering::SeqCst), 10);
    }
}
