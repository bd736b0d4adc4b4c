//! The civic-ledger domain: aggregates, commands, events and value types
//! (docs/DESIGN.md §5). Pure: no IO, no SQL, no HTTP, no clock reads; what a command
//! needs from outside (the time, a category's deadlines, a site's grid) comes
//! in the command.

/// Implements cqrs-es's `Aggregate` for a type whose business rules are one
/// `decide(&self, command) -> Result<event, DomainError>` (each command leads
/// to exactly one event or a refusal) and whose `fold(&mut self, event)` only
/// applies events.
macro_rules! aggregate {
    ($aggregate:ty, $name:literal, $command:ty, $event:ty) => {
        impl cqrs_es::Aggregate for $aggregate {
            const TYPE: &'static str = $name;
            type Command = $command;
            type Event = $event;
            type Error = $crate::error::DomainError;
            type Services = ();

            async fn handle(
                &mut self,
                command: $command,
                _: &(),
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), $crate::error::DomainError> {
                let event = self.decide(command)?;
                sink.write(event, self).await;
                Ok(())
            }

            fn apply(&mut self, event: $event) {
                self.fold(event)
            }
        }

        impl $crate::Decide for $aggregate {
            fn decide(&self, command: $command) -> Result<$event, $crate::error::DomainError> {
                // The inherent `decide`, where the rules are.
                <$aggregate>::decide(self, command)
            }
        }
    };
}

pub mod community;
pub mod erasure;
pub mod error;
pub mod patrol;
pub mod points;
pub mod report;
pub mod streams;
pub mod suggestion;
pub mod values;

pub use error::DomainError;

/// An aggregate's rules without cqrs-es's event sink: one command leads to
/// one event or a refusal. The API decides through this so that it can
/// append with its own metadata and learn the positions it wrote.
pub trait Decide: cqrs_es::Aggregate {
    fn decide(&self, command: Self::Command) -> Result<Self::Event, DomainError>;
}
