#![doc = include_str!("../README.md")]
// This crate is test code: its assertions are its purpose, and a failed one must stop the
// scenario with a message, which is what `panic`, `unwrap` and `expect` do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fixture;
pub mod runner;
pub mod scenarios;
mod support;

pub use fixture::{Fixture, QueueSpec, Skip, TimeMode};
pub use runner::{Outcome, Scenario, run_all, run_all_parallel, run_scenario, selected};

/// Calls `$callback!` with the path of every scenario, so the registry and the test macro are
/// generated from one list.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_scenario {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            basic::round_trip_keeps_body_and_every_field,
            basic::generated_message_ids_are_uuid_v4,
            basic::pinned_message_id_is_kept,
            basic::complete_removes_the_message,
            basic::complete_batch_settles_each_receipt,
            basic::receive_respects_max_messages,
            basic::empty_receive_waits_then_returns_empty,
            basic::waiting_receive_wakes_on_arrival,
            basic::sequence_numbers_increase,
            settle::abandon_redelivers_with_a_higher_count,
            settle::abandon_with_delay_hides_the_message_for_the_delay,
            settle::lock_expiry_redelivers_with_a_higher_count,
            settle::complete_after_lock_expiry_is_lock_lost,
            settle::complete_twice_is_lock_lost,
            settle::abandon_after_lock_loss_is_lock_lost,
            settle::renew_lock_keeps_the_message_hidden,
            settle::foreign_receipts_are_refused,
            dead_letter::dead_letter_keeps_reason_and_message,
            dead_letter::max_delivery_count_moves_to_dead_letter,
            dead_letter::dead_lettered_messages_can_be_completed,
            dead_letter::dead_letter_queue_can_be_peeked,
            dead_letter::largest_accepted_message_is_dead_lettered_with_its_reason,
            batch::batch_with_an_oversized_entry_partly_fails,
            batch::large_batches_are_split,
            sessions::session_messages_come_in_order,
            sessions::interleaved_sessions_keep_their_own_order,
            sessions::session_lock_is_exclusive,
            sessions::session_lock_expiry_releases_the_session,
            sessions::session_close_returns_unsettled_messages,
            sessions::renew_session_lock_extends_it,
            sessions::session_state_round_trips,
            sessions::accept_next_without_sessions_returns_none,
            sessions::session_queue_refuses_messages_without_session,
            sessions::session_lost_lock_fails_settles,
            sessions::session_messages_settle_through_the_provider,
            scheduling::scheduled_message_is_invisible_until_due,
            scheduling::cancel_scheduled_removes_the_message,
            scheduling::cancel_unknown_sequence_number_is_not_found,
            scheduling::expired_messages_are_never_delivered,
            scheduling::expired_messages_are_dead_lettered_when_configured,
            limits::oversized_message_reports_size_and_limit,
            limits::invalid_queue_names_are_rejected,
            limits::missing_queue_is_not_found,
            limits::zero_max_messages_is_invalid,
            peek::peek_does_not_lock_or_count,
            concurrency::concurrent_receivers_never_share_a_message,
            concurrency::concurrent_senders_lose_nothing,
            lifecycle::closed_provider_refuses_calls,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_registry {
    (() $($module:ident :: $name:ident),* $(,)?) => {
        /// Every scenario, in the order the suite runs them.
        pub const SCENARIOS: &[$crate::Scenario] = &[
            $($crate::Scenario {
                name: stringify!($name),
                run: |fixture| Box::pin($crate::scenarios::$module::$name(fixture)),
            }),*
        ];
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_tests {
    (($mode:expr, $fixture:expr) $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::run_scenario(
                    $crate::SCENARIOS
                        .iter()
                        .find(|scenario| scenario.name == stringify!($name))
                        .expect("every test names a registered scenario"),
                    $mode,
                    || $fixture,
                );
            }
        )*
    };
}

__for_each_scenario!(__scenario_registry!());

/// Expands to one `#[test]` per scenario, each running in a runtime of the given
/// [`TimeMode`] against a fixture made by `$fixture` (an expression evaluated inside the
/// scenario's runtime, once per scenario). See the crate documentation for an example.
#[macro_export]
macro_rules! conformance_suite {
    ($mode:expr, $fixture:expr $(,)?) => {
        $crate::__for_each_scenario!(__scenario_tests!($mode, $fixture));
    };
}
