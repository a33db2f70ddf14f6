//! What a publish turns into: data items in a device's bucket (validated as
//! TagoIO does), after the device's JavaScript payload parser has run; and the
//! actions that decide it: their files (`file`), the supervisor that runs
//! them (`supervisor`), what a message or a stored batch sets off and its
//! transaction (`fire`), their lock state (`locks`), the analyses they run
//! (`analysis`, `run`) and the deliveries they make (`deliver`).

pub(crate) mod analysis;
pub(crate) mod data;
pub(crate) mod deliver;
pub(crate) mod file;
pub(crate) mod fire;
pub(crate) mod ingest;
pub(crate) mod locks;
pub(crate) mod parser;
pub(crate) mod run;
pub(crate) mod supervisor;
