//! The live progress bar on stderr: phase, achieved request rate, errors, p99 of the primary
//! request over the last tick, iterations in flight and dropped. indicatif hides it by itself
//! when stderr is not a terminal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::LoadConfig;
use crate::scenario::Ctx;

const TICK: Duration = Duration::from_millis(500);

pub(crate) struct Progress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Progress {
    pub fn start(
        ctx: Arc<Ctx>,
        in_flight: Arc<Semaphore>,
        max_in_flight: usize,
        start: Instant,
        config: &LoadConfig,
    ) -> Progress {
        let warmup = config.warmup;
        let total = config.warmup + config.duration;
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(total.as_millis()).unwrap_or(u64::MAX)),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:24}] {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut last = Instant::now();
            let (mut errors_total, mut dropped_total) = (0u64, 0u64);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let now = Instant::now();
                let (requests, errors, dropped, p99_ms) = ctx.recorder.take_live();
                errors_total += errors;
                dropped_total += dropped;
                let dt = now.duration_since(last).as_secs_f64().max(1e-3);
                last = now;
                let elapsed = now.duration_since(start);
                let phase = if elapsed < warmup {
                    "warm-up"
                } else if elapsed < total {
                    "measuring"
                } else {
                    "draining"
                };
                bar.set_position(u64::try_from(elapsed.min(total).as_millis()).unwrap_or(0));
                let p99 = p99_ms.map_or_else(|| "-".to_string(), |p| format!("{p:.2} ms"));
                bar.set_message(format!(
                    "{phase}  {:.0} req/s  errors {errors_total}  p99 {p99}  in flight {}  \
                     dropped {dropped_total}",
                    requests as f64 / dt,
                    max_in_flight - in_flight.available_permits(),
                ));
            }
            bar.finish_and_clear();
        });
        Progress { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
