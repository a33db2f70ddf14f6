//! What a publish turns into: data items in a device's bucket (validated as
//! TagoIO does), after the device's JavaScript payload parser has run; and the
//! actions that decide it: their files (`file`) and the analyses they run
//! (`analysis`).

pub mod analysis;
pub mod data;
pub mod file;
pub mod ingest;
pub mod parser;
pub mod supervisor;
