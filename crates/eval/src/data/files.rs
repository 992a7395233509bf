//! Rows of a dataset file as JSON objects: JSON Lines (optionally gzipped), a JSON array,
//! Parquet, and Arrow IPC in both the stream format (what HF `datasets` writes in
//! `save_to_disk` and its cache) and the file format.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use arrow_array::RecordBatch;
use serde_json::Value as Json;

use crate::{EvalError, Result};

fn data_err(path: &Path, msg: impl std::fmt::Display) -> EvalError {
    EvalError::Data { path: path.to_path_buf(), msg: msg.to_string() }
}

pub fn read_rows(path: &Path) -> Result<Vec<Json>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_lowercase();
    let rows = if name.ends_with(".parquet") {
        read_parquet(path)?
    } else if name.ends_with(".arrow") || name.ends_with(".ipc") || name.ends_with(".feather") {
        read_arrow(path)?
    } else if name.ends_with(".jsonl.gz") || name.ends_with(".json.gz") {
        let f = File::open(path).map_err(EvalError::io("opening", path))?;
        read_json_lines(path, BufReader::new(flate2::read::GzDecoder::new(f)))?
    } else if name.ends_with(".jsonl") || name.ends_with(".json") {
        let f = File::open(path).map_err(EvalError::io("opening", path))?;
        let mut r = BufReader::new(f);
        let first =
            r.fill_buf().map_err(EvalError::io("reading", path))?.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first == Some(b'[') {
            serde_json::from_reader::<_, Vec<Json>>(r).map_err(|e| data_err(path, e))?
        } else {
            read_json_lines(path, r)?
        }
    } else {
        return Err(data_err(path, "unknown format: expected .jsonl, .json, .jsonl.gz, .parquet or .arrow"));
    };
    if let Some((i, _)) = rows.iter().enumerate().find(|(_, r)| !r.is_object()) {
        return Err(data_err(path, format!("row {i} is not a JSON object")));
    }
    Ok(rows)
}

fn read_json_lines(path: &Path, r: impl BufRead) -> Result<Vec<Json>> {
    let mut rows = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(EvalError::io("reading", path))?;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(serde_json::from_str(&line).map_err(|e| data_err(path, format!("line {}: {e}", i + 1)))?);
    }
    Ok(rows)
}

fn batches_to_rows(path: &Path, batches: &[RecordBatch]) -> Result<Vec<Json>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(&mut buf);
        for b in batches {
            w.write(b).map_err(|e| data_err(path, e))?;
        }
        w.finish().map_err(|e| data_err(path, e))?;
    }
    if buf.is_empty() {
        return Ok(vec![]);
    }
    serde_json::from_slice(&buf).map_err(|e| data_err(path, e))
}

fn read_arrow(path: &Path) -> Result<Vec<Json>> {
    let mut f = File::open(path).map_err(EvalError::io("opening", path))?;
    let mut magic = [0u8; 6];
    let is_file_format = f.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
    let f = File::open(path).map_err(EvalError::io("opening", path))?;
    let batches: Vec<RecordBatch> = if is_file_format {
        let r = arrow_ipc::reader::FileReader::try_new(f, None).map_err(|e| data_err(path, e))?;
        r.collect::<std::result::Result<_, _>>().map_err(|e| data_err(path, e))?
    } else {
        let r = arrow_ipc::reader::StreamReader::try_new(BufReader::new(f), None).map_err(|e| data_err(path, e))?;
        r.collect::<std::result::Result<_, _>>().map_err(|e| data_err(path, e))?
    };
    batches_to_rows(path, &batches)
}

fn read_parquet(path: &Path) -> Result<Vec<Json>> {
    let f = File::open(path).map_err(EvalError::io("opening", path))?;
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| data_err(path, e))?;
    let batches: Vec<RecordBatch> = r.collect::<std::result::Result<_, _>>().map_err(|e| data_err(path, e))?;
    batches_to_rows(path, &batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, Int64Array, ListArray, StringArray};
    use serde_json::json;

    fn batch() -> RecordBatch {
        let q: ArrayRef = Arc::new(StringArray::from(vec![Some("What?"), None]));
        let label: ArrayRef = Arc::new(Int64Array::from(vec![1, 0]));
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            Some(vec![]),
        ]));
        RecordBatch::try_from_iter(vec![("q", q), ("label", label), ("ids", list)]).unwrap()
    }

    fn expected() -> Vec<Json> {
        vec![json!({"q": "What?", "label": 1, "ids": [1, 2]}), json!({"q": null, "label": 0, "ids": []})]
    }

    #[test]
    fn arrow_stream_file_and_parquet_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch();
        let stream = dir.path().join("data-00000-of-00001.arrow");
        let mut w = arrow_ipc::writer::StreamWriter::try_new(File::create(&stream).unwrap(), &b.schema()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        assert_eq!(read_rows(&stream).unwrap(), expected());

        let file = dir.path().join("f.arrow");
        let mut w = arrow_ipc::writer::FileWriter::try_new(File::create(&file).unwrap(), &b.schema()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        assert_eq!(read_rows(&file).unwrap(), expected());

        let pq = dir.path().join("test-00000-of-00001.parquet");
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&pq).unwrap(), b.schema(), None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        assert_eq!(read_rows(&pq).unwrap(), expected());
    }

    #[test]
    fn jsonl_and_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"a\": 1}\n\n{\"a\": 2}\n").unwrap();
        assert_eq!(read_rows(&p).unwrap(), vec![json!({"a": 1}), json!({"a": 2})]);
        std::fs::write(&p, "{\"a\": 1}\n{oops\n").unwrap();
        assert!(read_rows(&p).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&p, "[1, 2]").unwrap();
        assert!(read_rows(&p).unwrap_err().to_string().contains("row 0"));
        assert!(read_rows(&dir.path().join("x.csv")).unwrap_err().to_string().contains("unknown format"));
        let garbage = dir.path().join("g.arrow");
        std::fs::write(&garbage, b"not arrow at all").unwrap();
        assert!(read_rows(&garbage).is_err());
    }
}
