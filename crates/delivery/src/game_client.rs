//! The one call the workers make to the game side, as a narrow port: the IDIP client
//! ([`IdipClient`]) in production, a fake in tests that drive the dispatcher on virtual time.

use std::future::Future;

use hongbao_gateway::{DeliveryOutcome, DeliveryRequest, GatewayError, IdipClient};

/// Where the workers deliver. The contract is [`IdipClient::deliver`]'s: the request's serial is
/// the order id, a repeat is answered `duplicate`, and an error says whether a retry can help.
pub trait GameClient: Send + Sync + 'static {
    /// Delivers `request` to its game.
    fn deliver(
        &self,
        request: &DeliveryRequest,
    ) -> impl Future<Output = Result<DeliveryOutcome, GatewayError>> + Send;

    /// How many games it reaches (the dispatcher checks it against the campaign).
    fn games(&self) -> usize;
}

impl GameClient for IdipClient {
    fn deliver(
        &self,
        request: &DeliveryRequest,
    ) -> impl Future<Output = Result<DeliveryOutcome, GatewayError>> + Send {
        IdipClient::deliver(self, request)
    }

    fn games(&self) -> usize {
        IdipClient::games(self)
    }
}
