//! feedhound: watches feeds, stores every story once, flags the ones that mention tracked companies.
pub mod fetch;
pub mod matcher;
pub mod model;
pub mod parse;
pub mod text;
