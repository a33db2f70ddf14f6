//! Which of the per-core arbiters the current thread is, so that a topic
//! actor can be started beside the connection that publishes to it.
//!
//! The server starts its arbiters with [`arbiters`], which numbers them
//! (each runs [`set`] first); a thread that is not one of them (the main
//! arbiter, a test's runtime) has no number.

use std::cell::Cell;

thread_local! {
    static HOME: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Names the current thread arbiter `index` of the server's list.
fn set(index: usize) {
    HOME.with(|h| h.set(Some(index)));
}

/// Starts `n` arbiters, each knowing its index in the returned list.
pub(crate) fn arbiters(n: usize) -> Vec<actix::Arbiter> {
    (0..n)
        .map(|i| {
            let a = actix::Arbiter::new();
            a.spawn_fn(move || set(i));
            a
        })
        .collect()
}

/// The index of the arbiter the current thread is, if it is one.
pub(crate) fn current() -> Option<usize> {
    HOME.with(|h| h.get())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use actix::prelude::*;

    use super::*;
    use crate::config::Synchronous;
    use crate::router::budget::RetainedBudget;
    use crate::router::topic::Topic;
    use crate::router::{QueueLimits, Resolve, Router, RouterLimits};
    use crate::store::Store;

    /// Asks a topic actor which arbiter it runs on.
    #[derive(Message)]
    #[rtype(result = "Option<usize>")]
    struct WhereAreYou;

    impl Handler<WhereAreYou> for Topic {
        type Result = Option<usize>;

        fn handle(&mut self, _: WhereAreYou, _: &mut Self::Context) -> Option<usize> {
            current()
        }
    }

    #[test]
    fn a_new_topic_actor_starts_on_the_arbiter_of_the_connection_that_asked() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path(), Synchronous::Normal).expect("the store opens");
        let system = actix::System::new();
        system.block_on(async move {
            let arbiters = super::arbiters(2);
            let handles = arbiters.iter().map(|a| a.handle()).collect();
            let limits = RouterLimits {
                queue: QueueLimits {
                    capacity: 10,
                    max_bytes: 1 << 20,
                    max_queued: 10,
                    slow_timeout: Duration::from_secs(1),
                },
                max_topics: 100,
                max_subscriptions_per_client: 10,
                max_sessions_per_device: 10,
                max_session_expiry: None,
                retained: Arc::new(RetainedBudget::new(100, 1 << 20)),
            };
            let router = Router::new(store, handles, limits).start();
            assert_eq!(current(), None, "the test's own thread is no arbiter");
            for (name, home) in [("a", 1), ("b", 0), ("c", 1), ("d", 1)] {
                let topic = router
                    .send(Resolve(name.into(), Some(home)))
                    .await
                    .expect("the router answers")
                    .expect("a topic actor");
                let at = topic.send(WhereAreYou).await.expect("the topic answers");
                assert_eq!(at, Some(home), "topic {name}");
            }
            // Asked from no arbiter: spread over both.
            let mut seen = Vec::new();
            for name in ["e", "f"] {
                let topic = router
                    .send(Resolve(name.into(), None))
                    .await
                    .expect("the router answers")
                    .expect("a topic actor");
                seen.push(topic.send(WhereAreYou).await.expect("the topic answers"));
            }
            seen.sort();
            assert_eq!(seen, [Some(0), Some(1)]);
            for a in arbiters {
                a.stop();
            }
        });
    }
}
