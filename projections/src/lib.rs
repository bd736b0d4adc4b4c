//! Read models folded from the event log (DESIGN §6): the projection runner,
//! ledgers, statements, leaderboards and the audit trail. They arrive with the
//! reports issue, on `store::Subscription` and `EventStore::read_log`.
