//! Where guest code runs: a tokio runtime of its own, never the threads that serve the API.
//!
//! Its threads (as many as the machine has cores) run at a lower scheduling priority (nice 10 on
//! Linux), so when plugins keep every core busy the operating system still gives the API's threads
//! the CPU first. Guest code yields back to this runtime at every epoch tick (see the call's epoch
//! callback), so calls sharing a thread take turns instead of one running to its deadline.
//!
//! Each call's CPU time is measured per poll with the thread's CPU clock, so time spent waiting
//! (on the database, on an outbound request, for a turn) is not counted.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The runtime guest code runs on.
pub struct PluginExecutor {
    runtime: Option<tokio::runtime::Runtime>,
    threads: usize,
}

impl std::fmt::Debug for PluginExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginExecutor")
            .field("threads", &self.threads)
            .finish()
    }
}

/// The guest thread count used when none is configured: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

impl PluginExecutor {
    /// A runtime with `threads` worker threads (at least one) at lowered priority.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads)
            .thread_name("plugin")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            threads,
        })
    }

    /// Worker threads guest code runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on the plugin threads and returns its output with the CPU time it used.
    /// `None` if the executor is shutting down or `work` panicked.
    pub async fn run<F>(&self, work: F) -> Option<(F::Output, Duration)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref()?;
        runtime.spawn(CpuMetered::new(work)).await.ok()
    }
}

impl Drop for PluginExecutor {
    fn drop(&mut self) {
        // Dropping a runtime may happen inside another runtime (a host stopping in a test);
        // shutting it down in the background is the form allowed there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's scheduling priority (Linux threads have their own nice value).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the calling thread's nice value.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// The calling thread's CPU time so far.
fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the timespec passed by pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0 {
            return Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

/// A future that adds up the CPU time of its polls.
struct CpuMetered<F> {
    inner: Pin<Box<F>>,
    used: Duration,
}

impl<F> CpuMetered<F> {
    fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            used: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuMetered<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let before = thread_cpu_time();
        let polled = self.inner.as_mut().poll(cx);
        self.used += thread_cpu_time().saturating_sub(before);
        polled.map(|output| (output, self.used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_plugin_threads_and_its_cpu_time_is_measured() {
        let executor = PluginExecutor::new(1).unwrap();
        // Busy until the thread used 30 ms of CPU (however loaded the machine is).
        let (name, cpu) = executor
            .run(async {
                let started = thread_cpu_time();
                let mut x = 0u64;
                while thread_cpu_time().saturating_sub(started) < Duration::from_millis(30) {
                    x = x.wrapping_mul(31).wrapping_add(7);
                }
                std::hint::black_box(x);
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("plugin"));
        assert!(cpu >= Duration::from_millis(30), "{cpu:?}");
        // Waiting is not CPU time.
        let (_, idle) = executor
            .run(async { tokio::time::sleep(Duration::from_millis(30)).await })
            .await
            .unwrap();
        assert!(idle < Duration::from_millis(10), "{idle:?}");
    }
}
