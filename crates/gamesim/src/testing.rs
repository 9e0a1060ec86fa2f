//! The simulator on a loopback port, for the integration tests of the crates that talk to the
//! game side (gateway, delivery, reconciliation): one way to start it, point a campaign at it
//! and stop it, instead of one per test suite.

use std::sync::Arc;

use hongbao_domain::Campaign;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{GameSim, SimConfig, SimError, serve};

/// A simulator serving on `127.0.0.1` at a port of the system's choosing, and the campaign
/// whose games' IDIP endpoints point at it. [`RunningSim::stop`] stops it cleanly (requests in
/// flight answered, the delivery log synced); dropping it instead aborts the server.
pub struct RunningSim {
    sim: Arc<GameSim>,
    campaign: Campaign,
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSim").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl RunningSim {
    /// Builds the simulator for `campaign` with `config`, serves it on a loopback port, and
    /// points every game's `idip_url` at it (the rest of the campaign, timeouts included, is
    /// kept as given). Spawns the server: call it inside a Tokio runtime.
    pub async fn start(mut campaign: Campaign, config: SimConfig) -> Result<RunningSim, SimError> {
        let sim = GameSim::new(&campaign, config)?;
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(SimError::Bind)?;
        let base_url = format!("http://{}", listener.local_addr().map_err(SimError::Bind)?);
        for game in &mut campaign.games {
            game.idip_url = base_url.clone();
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, sim.clone(), async move {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        }));
        Ok(RunningSim { sim, campaign, base_url, stop: Some(stop), server: Some(server) })
    }

    /// The simulator itself: its stats, faults and delivery log.
    pub fn sim(&self) -> &Arc<GameSim> {
        &self.sim
    }

    /// The campaign given to [`RunningSim::start`], its games' IDIP endpoints pointing here.
    pub fn campaign(&self) -> &Campaign {
        &self.campaign
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops taking connections, waits for the requests in flight (a hanging delivery holds
    /// it up to `timeout_hang_ms`) and syncs the delivery log; returns the server's result.
    /// A panic of the server is passed on.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(server) = self.server.take() else { return Ok(()) };
        match server.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
