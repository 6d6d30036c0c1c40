#![doc = include_str!("../README.md")]

mod address;
mod broker;
mod cbs;
mod codec;
mod config;
mod connection;
mod error;
mod frame;
mod listener;
mod locks;
mod management;
mod message;
mod sasl;

pub use config::{
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SESSION_WAIT, EmulatorConfig,
    QueueConfig,
};
pub use error::EmulatorError;
pub use listener::{Emulator, connection_string};
