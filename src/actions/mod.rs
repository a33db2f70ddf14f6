//! What a publish turns into: data items in a device's bucket (validated as
//! TagoIO does), after the device's JavaScript payload parser has run.

pub mod data;
pub mod ingest;
pub mod parser;
pub mod supervisor;
