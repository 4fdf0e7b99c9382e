//! RFC 8555 on instant-acme, and nothing else: the HTTP client (`client`: one deadline and a
//! size cap per request, no redirects, Retry-After bounded), the CA's errors as data and their
//! wording (`error`, with the `badNonce` re-send every request goes through), the account
//! (`account`: created once and shared through the store, EAB, revocation), and the steps of
//! one order (`order`: new-order, its challenges as typed data, set ready, poll, finalize with
//! our CSR, download the chain).
//!
//! It knows nothing of webroots, DNS, nodes or barriers: the solvers (`solve`) answer the
//! challenges an order hands out, and `issue` drives the steps around them. It does not take
//! the lease, run preflight or publish either: `issue` does.

mod account;
mod client;
mod error;
mod order;

pub use account::account;
pub(crate) use account::{
    directory, directory_date, eab_key, existing_account, find_by_key, id_url, load_account,
    read_credentials, revoke, Revocation,
};
pub(crate) use client::http_client;
pub(crate) use error::{
    acme_err, describe, is_bad_nonce, resend_on_bad_nonce, AcmeError, BAD_NONCE_ROUNDS,
};
pub(crate) use order::{
    generate_key, offered_profile, Answer, Challenge, Finalized, OrderRequest, PlacedOrder,
};
