//! The campaign's delivery stream: set-up, batched publishing, per-game fetches.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::Context;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;

use crate::config::{
    ACKS_IN_FLIGHT_MAX, FETCH_BATCH_MAX, JetStreamConfig, REQUEST_TIMEOUT_MS, STREAM_MESSAGES_MAX,
};
use crate::{JetStreamError, Names, unavailable};

/// One message to publish: to `game`'s subject, deduplicated by `msg_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub game: usize,
    pub msg_id: String,
    pub payload: Bytes,
}

/// A publish the stream acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The stream sequence of the stored message (for a duplicate: of the first one).
    pub sequence: u64,
    /// The message id was already in the deduplication window: nothing new was stored.
    pub duplicate: bool,
}

/// A campaign's stream and its games' consumers, set up on open.
pub struct DeliveryStream {
    context: Context,
    names: Names,
    config: JetStreamConfig,
    /// By game index.
    consumers: Vec<PullConsumer>,
}

impl std::fmt::Debug for DeliveryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryStream").field("stream", &self.names.stream()).finish()
    }
}

impl DeliveryStream {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`) and opens the stream (see
    /// [`DeliveryStream::open`]).
    pub async fn connect(
        url: &str,
        names: Names,
        config: JetStreamConfig,
    ) -> Result<DeliveryStream, JetStreamError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .request_timeout(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)))
            .connect(url)
            .await
            .map_err(|e| unavailable(&format!("connect to {url}"), e))?;
        DeliveryStream::open(client, names, config).await
    }

    /// Creates the stream and the games' consumers, or updates them to `config` when they
    /// exist (a restart, another node): every node opens the same names with the same settings.
    pub async fn open(
        client: async_nats::Client,
        names: Names,
        config: JetStreamConfig,
    ) -> Result<DeliveryStream, JetStreamError> {
        config.validate()?;
        let context = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .max_ack_inflight(ACKS_IN_FLIGHT_MAX)
            .backpressure_on_inflight(true)
            .build(client);
        let stream_config = stream_config(&names, &config);
        let mut stream = context
            .get_or_create_stream(stream_config.clone())
            .await
            .map_err(|e| unavailable("create stream", e))?;
        if stream.cached_info().config.duplicate_window != stream_config.duplicate_window {
            context
                .update_stream(&stream_config)
                .await
                .map_err(|e| unavailable("update stream", e))?;
            stream = context
                .get_stream(names.stream())
                .await
                .map_err(|e| unavailable("get stream", e))?;
        }
        let mut consumers = Vec::with_capacity(names.games());
        for game in 0..names.games() {
            let consumer = stream
                .create_consumer(consumer_config(&names, &config, game))
                .await
                .map_err(|e| unavailable("create consumer", e))?;
            consumers.push(consumer);
        }
        Ok(DeliveryStream { context, names, config, consumers })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    /// Publishes the whole batch, then awaits every acknowledgement together: one round trip
    /// for the batch. The answers are in the batch's order.
    pub async fn publish_all(&self, batch: &[Outgoing]) -> Vec<Result<Published, JetStreamError>> {
        let mut pending = Vec::with_capacity(batch.len());
        for out in batch {
            pending.push(self.send(out).await);
        }
        let acks = pending.into_iter().map(|sent| async move {
            let ack = sent?.into_future().await.map_err(|e| unavailable("publish ack", e))?;
            Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
        });
        join_all(acks).await
    }

    async fn send(
        &self,
        out: &Outgoing,
    ) -> Result<jetstream::context::PublishAckFuture, JetStreamError> {
        let subject = self
            .names
            .subject(out.game)
            .ok_or_else(|| JetStreamError::InvalidConfig(format!("no game {}", out.game)))?;
        let message = PublishMessage::build().payload(out.payload.clone()).message_id(&out.msg_id);
        self.context.send_publish(subject, message).await.map_err(|e| unavailable("publish", e))
    }

    /// Up to `max` (at most [`FETCH_BATCH_MAX`]) messages of `game` available now, without
    /// waiting for more: each is delivered to us until acked, naked, or its ack wait runs out.
    pub async fn fetch(&self, game: usize, max: usize) -> Result<Vec<Message>, JetStreamError> {
        let consumer = self.consumer(game)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(FETCH_BATCH_MAX);
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|e| unavailable("fetch", e))?;
        let mut messages = Vec::with_capacity(max);
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| unavailable("fetch", e))?);
        }
        Ok(messages)
    }

    /// `game`'s backlog as its consumer counts it: (not yet delivered, delivered and not
    /// acknowledged).
    pub async fn pending(&self, game: usize) -> Result<(u64, u64), JetStreamError> {
        let mut consumer = self.consumer(game)?.clone();
        let info = consumer.info().await.map_err(|e| unavailable("consumer info", e))?;
        Ok((info.num_pending, info.num_ack_pending as u64))
    }

    /// Whether the stream still holds the message stored at `sequence` on `game`'s subject with
    /// `payload`: with work-queue retention a message is gone once acknowledged (or purged, or
    /// lost by the server), so this answers "is it still waiting to be delivered?" in one
    /// request. A sequence that now holds something else counts as gone.
    pub async fn holds(
        &self,
        game: usize,
        sequence: u64,
        payload: &[u8],
    ) -> Result<bool, JetStreamError> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let subject = self
            .names
            .subject(game)
            .ok_or_else(|| JetStreamError::InvalidConfig(format!("no game {game}")))?;
        let stream = self
            .context
            .get_stream_no_info(self.names.stream())
            .await
            .map_err(|e| unavailable("get stream", e))?;
        match stream.get_raw_message(sequence).await {
            Ok(message) => Ok(message.subject.as_str() == subject && message.payload == payload),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(unavailable("get message", e)),
        }
    }

    /// Deletes the stream with its consumers and messages (tests, and an operator ending a
    /// campaign).
    pub async fn delete(&self) -> Result<(), JetStreamError> {
        self.context
            .delete_stream(self.names.stream())
            .await
            .map(|_| ())
            .map_err(|e| unavailable("delete stream", e))
    }

    /// Deletes the stream named by `names` on the server at `url` without opening (and so
    /// creating) it first: whoever removes a namespace it no longer runs. `Ok(false)` when there
    /// was no such stream.
    pub async fn remove(url: &str, names: &Names) -> Result<bool, JetStreamError> {
        use async_nats::jetstream::ErrorCode;
        use async_nats::jetstream::context::DeleteStreamErrorKind;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .request_timeout(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)))
            .connect(url)
            .await
            .map_err(|e| unavailable(&format!("connect to {url}"), e))?;
        let context = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .build(client);
        match context.delete_stream(names.stream()).await {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                DeleteStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(unavailable("delete stream", e)),
            },
        }
    }

    fn consumer(&self, game: usize) -> Result<&PullConsumer, JetStreamError> {
        self.consumers
            .get(game)
            .ok_or_else(|| JetStreamError::InvalidConfig(format!("no game {game}")))
    }
}

fn stream_config(names: &Names, config: &JetStreamConfig) -> Config {
    Config {
        name: names.stream(),
        subjects: vec![names.subjects()],
        // A message leaves the stream when its game's consumer acknowledges it.
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: Duration::from_millis(config.dedup_window_ms),
        max_messages: STREAM_MESSAGES_MAX,
        // A full stream refuses the publish (the claim is not answered 202) rather than drop
        // an accepted order.
        discard: DiscardPolicy::New,
        ..Config::default()
    }
}

fn consumer_config(names: &Names, config: &JetStreamConfig, game: usize) -> pull::Config {
    let name = names.consumer(game).expect("a game of the names");
    pull::Config {
        durable_name: Some(name.clone()),
        name: Some(name),
        filter_subject: names.subject(game).expect("a game of the names"),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_millis(config.ack_wait_ms),
        max_deliver: config.deliveries_max,
        max_ack_pending: config.ack_pending_max,
        max_batch: FETCH_BATCH_MAX as i64,
        backoff: config.redelivery_backoff_ms.iter().map(|&ms| Duration::from_millis(ms)).collect(),
        ..pull::Config::default()
    }
}
