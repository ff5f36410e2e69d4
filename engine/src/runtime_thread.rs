//! A single-threaded tokio runtime on an OS thread of its own.
//!
//! Work that must not queue behind the device connections' tasks (the organization actors, the
//! admin API) runs on one of these: the operating system schedules its thread beside the
//! server runtime's workers, so a wake-up there is not behind thousands of woken connection
//! tasks. Channels, `JoinHandle`s and sqlx pools work across runtimes, so callers on any
//! runtime reach what runs here.

use std::sync::Mutex;

use tokio::sync::oneshot;

/// A runtime thread. It runs until [`RuntimeThread::stop`] or until it is dropped; its runtime
/// is dropped on its own thread, which cancels what is left on it.
#[derive(Debug)]
pub struct RuntimeThread {
    handle: tokio::runtime::Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl RuntimeThread {
    /// Starts the thread; `name` names both the thread and the runtime's.
    pub fn start(name: &str) -> std::io::Result<RuntimeThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(name)
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Drives every task spawned here until told to stop (or until the owner is
                // dropped, which drops the sender); dropping the runtime then cancels the rest.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(RuntimeThread {
            handle,
            stop: Mutex::new(Some(stop)),
        })
    }

    /// Where to spawn work onto this thread.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Lets the thread end: the tasks still on it are cancelled.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().ok().and_then(|mut slot| slot.take()) {
            let _ = stop.send(());
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        self.stop();
    }
}
