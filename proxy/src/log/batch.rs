//! When JSON access lines reach stderr: in batches, by a thread of their
//! own, while a [`Batcher`] lives; at once otherwise.
//!
//! Must never: lose a queued line on an orderly exit, or reorder lines.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::JSON_LINES;

/// How long an access line may wait to be written with the lines after it
/// while a [`Batcher`] runs. A `write` into stderr's pipe per request wakes
/// the reader every time: 8% of the proxy's CPU at one request at a time
/// (docs/benchmarks.md round 4). The cost: a proxy killed with SIGKILL
/// loses the lines of at most the last `BATCH_EVERY`; every orderly exit
/// writes them.
pub const BATCH_EVERY: Duration = Duration::from_millis(5);
/// Lines waiting past this many bytes are written at once.
const BATCH_MAX: usize = 32 * 1024;

/// Access lines waiting for the batcher's thread; `on` while a [`Batcher`] lives.
struct Pending {
    on: bool,
    lines: Vec<u8>,
    /// The buffer of the batch last written, handed back for the next one.
    spare: Vec<u8>,
    /// The batcher's thread waits for a first line (else it wakes by itself).
    parked: bool,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    on: false,
    lines: Vec::new(),
    spare: Vec::new(),
    parked: false,
});
/// Wakes the batcher's thread, parked for want of lines, when one is queued.
static QUEUED: Condvar = Condvar::new();

fn pending() -> MutexGuard<'static, Pending> {
    // A panic while holding the lock leaves whole lines behind: go on.
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes one access line: queued while a [`Batcher`] lives, else now.
pub(super) fn write_access(line: &[u8]) {
    let mut p = pending();
    if !p.on {
        let _ = std::io::stderr().lock().write_all(line);
        return;
    }
    let first = p.lines.is_empty();
    p.lines.extend_from_slice(line);
    if p.lines.len() >= BATCH_MAX {
        p.write_out();
    } else if first && p.parked {
        QUEUED.notify_one();
    }
}

impl Pending {
    /// Writes the waiting lines to stderr, in the order they were queued.
    fn write_out(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let _ = std::io::stderr().lock().write_all(&self.lines);
        self.lines.clear();
        if self.lines.capacity() > 2 * BATCH_MAX {
            self.lines = Vec::new();
        }
    }
}

/// The batcher's write: the waiting lines are taken out of the queue and
/// written with the queue unlocked, so a request queuing its line never waits
/// for stderr's pipe (it did: a blocked worker and two context switches,
/// docs/benchmarks.md round 11). stderr's lock, taken before the queue's is
/// let go, keeps them ahead of any line queued or written after. `false`:
/// nothing was waiting.
fn write_batch() -> bool {
    let mut p = pending();
    if p.lines.is_empty() {
        return false;
    }
    let spare = std::mem::take(&mut p.spare);
    let mut batch = std::mem::replace(&mut p.lines, spare);
    let mut err = std::io::stderr().lock();
    drop(p);
    let _ = err.write_all(&batch);
    drop(err);
    batch.clear();
    if batch.capacity() <= 2 * BATCH_MAX {
        pending().spare = batch;
    }
    true
}

/// While it lives, JSON access lines are written in batches by a thread of
/// their own: at most [`BATCH_EVERY`] after the first line of a batch, or at
/// once past `BATCH_MAX` bytes. Dropping it writes what waits; later lines
/// are written at once. The thread sleeps while no line waits. Other log
/// lines write the waiting ones first, so stderr keeps the order things
/// happened in. Start it after [`init`](super::init); the text format is not batched.
pub struct Batcher(());

impl Batcher {
    pub fn start() -> Batcher {
        if !JSON_LINES.load(Ordering::Relaxed) {
            return Batcher(());
        }
        pending().on = true;
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(|| {
                loop {
                    let mut p = pending();
                    while p.on && p.lines.is_empty() {
                        p.parked = true;
                        p = QUEUED.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                    p.parked = false;
                    if !p.on {
                        return;
                    }
                    drop(p);
                    // While lines keep coming, one wake-up a batch, no signal.
                    loop {
                        std::thread::sleep(BATCH_EVERY);
                        if !write_batch() {
                            break;
                        }
                    }
                }
            });
        if spawned.is_err() {
            // No thread: every line is written at once, as without batching.
            pending().on = false;
        }
        Batcher(())
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        let mut p = pending();
        p.on = false;
        p.write_out();
        drop(p);
        QUEUED.notify_all();
    }
}

/// stderr for the subscriber's lines, after the access lines queued before them.
pub(super) fn log_writer() -> std::io::Stderr {
    pending().write_out();
    std::io::stderr()
}
