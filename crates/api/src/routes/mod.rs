//! One module per resource; each exposes `routes()` returning a `Router<ApiState>` that
//! [`crate::router`] merges. Later slices add `coupons`, `gifts`, `claims` and `orders` here.

pub mod catalog;
pub mod claims;
pub mod coupons;
pub mod demo;
pub mod health;
pub mod page;
