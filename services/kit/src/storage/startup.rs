//! Dependencies that come up late: a start-up step (create and migrate a schema, create a
//! bucket) retried in the background with backoff until it succeeds, however late the
//! dependency appears, and its state for health checks meanwhile. A service starts at once
//! and reports NOT_SERVING, naming what is missing, instead of exiting or crash-looping.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The first wait between attempts.
const FIRST: Duration = Duration::from_millis(200);
/// The longest wait between attempts.
const MAX: Duration = Duration::from_secs(10);

/// Why an attempt failed.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    /// For people, naming the dependency.
    pub message: String,
    /// Whether it may go away by itself (a server starting), as opposed to a wrong setting.
    pub retryable: bool,
}

#[derive(Clone, Debug)]
enum State {
    Starting(Failure),
    Ready,
}

/// The state of a start-up step; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Startup {
    state: watch::Receiver<State>,
}

impl Startup {
    /// A step that is done already.
    pub(crate) fn done() -> Startup {
        Startup {
            state: watch::Sender::new(State::Ready).subscribe(),
        }
    }

    /// Runs `attempt` now and then in the background, 200 ms apart doubling to 10 s, until it
    /// succeeds or every clone of the returned state is gone. `what` names the step in logs.
    pub(crate) fn spawn<F, Fut>(what: String, first: String, mut attempt: F) -> Startup
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send,
    {
        let (tx, rx) = watch::channel(State::Starting(Failure {
            message: first,
            retryable: true,
        }));
        tokio::spawn(async move {
            let started = Instant::now();
            let mut backoff = FIRST;
            let mut failures = 0u32;
            loop {
                match attempt().await {
                    Ok(()) => {
                        tx.send_replace(State::Ready);
                        if failures > 0 {
                            tracing::info!(step = %what, waited = ?started.elapsed(), "dependency is ready");
                        }
                        return;
                    }
                    Err(failure) => {
                        failures += 1;
                        if failure.retryable {
                            tracing::warn!(step = %what, error = %failure.message, retry_in = ?backoff, "waiting for a dependency");
                        } else {
                            tracing::error!(step = %what, error = %failure.message, retry_in = ?backoff, "a dependency refuses this service: check its setting");
                        }
                        tx.send_replace(State::Starting(failure));
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = tx.closed() => return,
                }
                backoff = (backoff * 2).min(MAX);
            }
        });
        Startup { state: rx }
    }

    /// Ok once done; else the last failure's message.
    pub(crate) fn check(&self) -> Result<(), String> {
        match &*self.state.borrow() {
            State::Ready => Ok(()),
            State::Starting(failure) => Err(failure.message.clone()),
        }
    }

    /// Resolves once done.
    pub(crate) async fn finished(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| matches!(s, State::Ready)).await;
    }

    /// Waits until done, or until an attempt fails for a reason that will not go away by
    /// itself, or `deadline` passes; the failure otherwise.
    pub(crate) async fn wait(&self, deadline: Duration) -> Result<(), String> {
        let mut state = self.state.clone();
        let settled = state.wait_for(|s| match s {
            State::Ready => true,
            State::Starting(failure) => !failure.retryable,
        });
        let timed_out = tokio::time::timeout(deadline, settled).await.is_err();
        match self.check() {
            Ok(()) => Ok(()),
            Err(message) if timed_out => Err(format!("{message} (gave up after {}s)", deadline.as_secs())),
            Err(message) => Err(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_until_the_dependency_appears() {
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        let startup = Startup::spawn("test".into(), "starting".into(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(Failure {
                        message: format!("down {n}"),
                        retryable: true,
                    })
                } else {
                    Ok(())
                }
            }
        });
        assert!(startup.check().is_err());
        startup.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        assert!(startup.check().is_ok());
    }

    #[tokio::test]
    async fn a_wrong_setting_ends_the_wait_but_not_the_retries() {
        let startup = Startup::spawn("test".into(), "starting".into(), || async {
            Err(Failure {
                message: "password authentication failed".into(),
                retryable: false,
            })
        });
        let err = startup.wait(Duration::from_secs(30)).await.unwrap_err();
        assert!(err.contains("password authentication failed"), "{err}");
    }
}
