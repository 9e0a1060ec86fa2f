//! The pure domain of hongbao: no I/O, no clocks, no randomness of its own. Everything here is
//! a function of its inputs, so the API, the workers and the tools agree by construction.

pub mod campaign;
pub mod coupon;
pub mod eligibility;
pub mod order;
pub mod profile;
pub mod ranking;
pub mod release;
pub mod role;
pub mod synth;
pub mod ticket;

pub use campaign::{
    Audience, Campaign, CampaignError, Channel, GameIndex, Gift, GiftIndex, RegistrationClass,
};
pub use coupon::{Coupon, CouponError, CouponKey, derive_coupon_key, sign_coupon, verify_coupon};
pub use eligibility::{Ineligible, RoleContext, Subject};
pub use order::{InvalidOrderId, Order, OrderEvent, OrderId, OrderStatus, transition};
pub use profile::{GameSet, Profile, ProfileTable};
pub use ranking::{GiftList, gift_list};
pub use role::{Role, RoleId, ZoneId};
pub use ticket::{Ticket, TicketError, sign_ticket, verify_ticket};
