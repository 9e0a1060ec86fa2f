//! The pure domain of hongbao: no I/O, no clocks, no randomness of its own. Everything here is
//! a function of its inputs, so the API, the workers and the tools agree by construction.

pub mod campaign;
pub mod profile;
pub mod synth;

pub use campaign::{
    Audience, Campaign, CampaignError, Channel, GameIndex, Gift, GiftIndex, RegistrationClass,
};
pub use profile::{GameSet, Profile, ProfileTable};
pub use synth::Role;
