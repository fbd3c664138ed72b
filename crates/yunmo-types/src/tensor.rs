use bytes::Bytes;

use crate::DataType;

/// Elements of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Fixed-size elements as little-endian, row-major bytes (`BOOL` is one byte, 0 or 1).
    Fixed(Bytes),
    /// `BYTES` elements, one byte string each.
    Bytes(Vec<Bytes>),
}

/// A tensor whose element count has been checked against its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    name: String,
    datatype: DataType,
    shape: Vec<i64>,
    data: TensorData,
}

/// Why a tensor could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TensorError {
    /// A dimension is negative.
    #[error("tensor '{name}': shape {shape:?} has a negative dimension")]
    NegativeDimension {
        /// Tensor name.
        name: String,
        /// Shape given.
        shape: Vec<i64>,
    },
    /// The element count overflows.
    #[error("tensor '{name}': shape {shape:?} has too many elements")]
    TooLarge {
        /// Tensor name.
        name: String,
        /// Shape given.
        shape: Vec<i64>,
    },
    /// Data size does not match the shape.
    #[error("tensor '{name}': shape {shape:?} with datatype {datatype} needs {expected} {unit}, got {given}")]
    SizeMismatch {
        /// Tensor name.
        name: String,
        /// Data type.
        datatype: DataType,
        /// Shape given.
        shape: Vec<i64>,
        /// Bytes or elements expected.
        expected: usize,
        /// Bytes or elements given.
        given: usize,
        /// "bytes" or "elements".
        unit: &'static str,
    },
    /// `BYTES` data given for a fixed type or the other way round.
    #[error("tensor '{name}': datatype {datatype} does not match the kind of data given")]
    KindMismatch {
        /// Tensor name.
        name: String,
        /// Data type.
        datatype: DataType,
    },
}

/// Number of elements of `shape`, or `None` on a negative dimension or overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |count, &dim| {
        let dim = usize::try_from(dim).ok()?;
        count.checked_mul(dim)
    })
}

impl Tensor {
    /// Builds a tensor, checking that `data` holds exactly the elements `shape` calls for.
    pub fn new(name: impl Into<String>, datatype: DataType, shape: Vec<i64>, data: TensorData) -> Result<Tensor, TensorError> {
        let name = name.into();
        if shape.iter().any(|&dim| dim < 0) {
            return Err(TensorError::NegativeDimension { name, shape });
        }
        let Some(count) = element_count(&shape) else {
            return Err(TensorError::TooLarge { name, shape });
        };
        let (expected, given, unit) = match (&data, datatype.element_size()) {
            (TensorData::Fixed(bytes), Some(size)) => {
                let Some(expected) = count.checked_mul(size) else {
                    return Err(TensorError::TooLarge { name, shape });
                };
                (expected, bytes.len(), "bytes")
            }
            (TensorData::Bytes(items), None) => (count, items.len(), "elements"),
            _ => return Err(TensorError::KindMismatch { name, datatype }),
        };
        if expected != given {
            return Err(TensorError::SizeMismatch { name, datatype, shape, expected, given, unit });
        }
        Ok(Tensor { name, datatype, shape, data })
    }

    /// Tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Element type.
    pub fn datatype(&self) -> DataType {
        self.datatype
    }
    /// Dimensions (all non-negative).
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }
    /// Elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }
    /// Number of elements.
    pub fn element_count(&self) -> usize {
        element_count(&self.shape).expect("shape was checked at construction. This is a bug.")
    }
    /// The same tensor under another name (the shape and elements, already checked, are kept).
    pub fn with_name(mut self, name: impl Into<String>) -> Tensor {
        self.name = name.into();
        self
    }
    /// Splits the tensor into its parts.
    pub fn into_parts(self) -> (String, DataType, Vec<i64>, TensorData) {
        (self.name, self.datatype, self.shape, self.data)
    }

    /// Byte length of the elements in Triton's binary encoding
    /// (fixed types: the raw bytes; `BYTES`: a 4-byte length before each element).
    pub fn binary_size(&self) -> usize {
        match &self.data {
            TensorData::Fixed(bytes) => bytes.len(),
            TensorData::Bytes(items) => items.iter().map(|item| 4 + item.len()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_size_against_shape() {
        let ok = Tensor::new("x", DataType::Fp32, vec![2, 2], TensorData::Fixed(Bytes::from(vec![0u8; 16])));
        assert!(ok.is_ok());
        let short = Tensor::new("x", DataType::Fp32, vec![2, 2], TensorData::Fixed(Bytes::from(vec![0u8; 12])));
        let message = short.unwrap_err().to_string();
        assert_eq!(message, "tensor 'x': shape [2, 2] with datatype FP32 needs 16 bytes, got 12");
        let negative = Tensor::new("x", DataType::Fp32, vec![-1], TensorData::Fixed(Bytes::new()));
        assert!(matches!(negative, Err(TensorError::NegativeDimension { .. })));
        let huge = Tensor::new("x", DataType::Fp64, vec![i64::MAX, 4], TensorData::Fixed(Bytes::new()));
        assert!(matches!(huge, Err(TensorError::TooLarge { .. })));
        let kind = Tensor::new("x", DataType::Bytes, vec![1], TensorData::Fixed(Bytes::new()));
        assert!(matches!(kind, Err(TensorError::KindMismatch { .. })));
        let strings = Tensor::new("s", DataType::Bytes, vec![2], TensorData::Bytes(vec![Bytes::from("ab"), Bytes::new()]));
        assert_eq!(strings.unwrap().binary_size(), 10);
    }
}
