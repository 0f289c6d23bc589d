//! Placeholder: replaced by the walker for this schema type.

use crate::{Error, Field, Selection, SchemaText};

#[derive(Debug)]
pub struct Schema;

#[derive(Debug)]
pub struct Plan;

impl Schema {
    pub fn parse(_text: &SchemaText, _selection: &Selection) -> Result<Schema, Error> {
        Err(Error::Schema("avro schemas are not supported yet".into()))
    }

    pub fn locate(&self, body: &[u8]) -> Result<(Vec<Field>, Plan), Error> {
        let _ = body;
        Err(Error::Schema("avro schemas are not supported yet".into()))
    }
}

impl Plan {
    pub fn apply(&self, _body: &[u8], _contents: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
        Err(Error::Schema("avro schemas are not supported yet".into()))
    }
}
