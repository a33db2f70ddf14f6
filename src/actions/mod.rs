//! What a publish turns into: data items in a device's bucket (validated as
//! TagoIO does), after the device's JavaScript payload parser has run; and the
//! actions that decide it: their files (`file`) and the analyses they run
//! (`analysis`).

pub(crate) mod analysis;
pub(crate) mod data;
pub(crate) mod file;
pub(crate) mod ingest;
pub(crate) mod parser;
pub(crate) mod supervisor;
