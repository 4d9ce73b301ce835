//! Volley connector: serves configured datasets to the gateway as
//! pre-sliced Arrow IPC.
//!
//! Modules and the data path through them:
//!
//! - [`config`]: the YAML file (gateway, tenant, performance limits,
//!   logging, `datasets:`), validated up front into [`config::Config`]; a
//!   file each for its limits, sections, dataset specs, errors, raw layout,
//!   validation and loading.
//! - [`source`]: [`source::Catalog::open`] turns a requested dataset *name*
//!   (the only thing a request can name) into an [`source::OpenDataset`]:
//!   schema, optional cheap row count, and a streaming iterator of record
//!   batches from CSV, NDJSON, Parquet, Arrow IPC, PostgreSQL or ODBC; live
//!   datasets (file follow, SQL watermark polling) run until their
//!   [`source::StopFlag`] is set.
//! - [`slice`](mod@slice): [`slice::IpcSlicer`] encodes batches into whole IPC messages
//!   of 64 KiB–1 MiB (configurable), each tagged with its
//!   [`slice::MessageKind`]; [`source::OpenDataset::into_ipc`] wires a
//!   dataset to it as an iterator of [`slice::EncodedMessage`].
//!
//! - [`tunnel`]: `parallel_connections` reverse WebSocket connections to the
//!   gateways `gateway.uri` lists, spread round robin (opened by its `dial`
//!   submodule: TCP, TLS, WebSocket upgrade); what each command asks for is
//!   decided by the protocol's `tunnel::ConnectorEnd`, which the connection
//!   drives; reconnects forever with backoff and jitter, to the next listed
//!   gateway, and at once when a draining gateway asks it to move.
//! - `producer`: the thread each `do_get` runs, which sends every encoded
//!   message as one binary frame (the protocol's `tunnel::Framer`; level 2:
//!   behind the 16-byte header, within the gateway's credit).
//!   A source failure reaches the gateway as [`public_error`] says: a
//!   `source_error` naming the dataset and an error id, the cause logged.
//! - [`service`]: `volley connector` and `volley connector --test`.
//! - [`system_service`]: the Windows service (`volley connector
//!   install|start|stop|uninstall`, and `run-service`, which the service
//!   manager starts) around the same run loop (the SCM side in its
//!   `windows` file), and the size-capped log file a service writes (its
//!   `log_file`). On Linux the connector runs under systemd instead
//!   (`packaging/volley-connector.service`).
//!
//! ```text
//! config.yaml ─▶ Config ─▶ Catalog::open(name) ─▶ OpenDataset ─▶ into_ipc ─▶ IpcStream
//!                                                  (schema, rows)            (Schema, Dictionary*,
//!                                                                             RecordBatch*, EndOfStream)
//! ```

// Production code: a panic here is a bug, so errors are returned or handled
// with a reason. Unit tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod ca;
pub mod config;
pub mod public_error;
pub mod service;
pub mod slice;
pub mod source;
pub mod system_service;
pub mod tunnel;

mod producer;

pub use config::{Config, ConfigError};
pub use slice::{EncodedMessage, IpcSlicer, MessageKind, SliceError, SliceOptions};
pub use source::{Catalog, IpcStream, OpenDataset, SourceError, StopFlag, StreamError};
