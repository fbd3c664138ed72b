//! Conversions between Yunmo tensors and ONNX Runtime values.

use bytes::Bytes;
use ort::memory::Allocator;
use ort::value::{DynTensor, DynValue, Tensor as OrtTensor, TensorElementType, ValueType};
use yunmo_backend::BackendError;
use yunmo_types::{DataType, Tensor, TensorData, TensorSpec};

pub(crate) fn datatype(element: TensorElementType) -> Option<DataType> {
    Some(match element {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn element_type(datatype: DataType) -> TensorElementType {
    match datatype {
        DataType::Bool => TensorElementType::Bool,
        DataType::Uint8 => TensorElementType::Uint8,
        DataType::Uint16 => TensorElementType::Uint16,
        DataType::Uint32 => TensorElementType::Uint32,
        DataType::Uint64 => TensorElementType::Uint64,
        DataType::Int8 => TensorElementType::Int8,
        DataType::Int16 => TensorElementType::Int16,
        DataType::Int32 => TensorElementType::Int32,
        DataType::Int64 => TensorElementType::Int64,
        DataType::Fp16 => TensorElementType::Float16,
        DataType::Fp32 => TensorElementType::Float32,
        DataType::Fp64 => TensorElementType::Float64,
        DataType::Bf16 => TensorElementType::Bfloat16,
        DataType::Bytes => TensorElementType::String,
    }
}

pub(crate) fn spec(name: &str, value_type: &ValueType) -> Result<TensorSpec, BackendError> {
    let ValueType::Tensor { ty, shape, .. } = value_type else {
        return Err(BackendError::Unsupported(format!(
            "'{name}' is a {value_type:?}; only tensor inputs and outputs can be served (for scikit-learn \
             classifiers, convert with zipmap=False)"
        )));
    };
    let datatype =
        datatype(*ty).ok_or_else(|| BackendError::Unsupported(format!("'{name}' has element type {ty:?}, which V2 has no name for")))?;
    Ok(TensorSpec { name: name.to_string(), datatype, shape: shape.to_vec() })
}

pub(crate) fn to_value(allocator: &Allocator, tensor: &Tensor) -> Result<DynValue, BackendError> {
    let shape: Vec<i64> = tensor.shape().to_vec();
    match tensor.data() {
        TensorData::Fixed(bytes) => {
            let mut value = DynTensor::new(allocator, element_type(tensor.datatype()), shape)
                .map_err(|error| BackendError::Inference(format!("cannot allocate input '{}': {error}", tensor.name())))?;
            let len = bytes.len();
            if len > 0 {
                // SAFETY: the tensor was allocated by ONNX Runtime on the CPU for exactly `len` bytes: its
                // element count times the element size, the same product `Tensor::new` checked `bytes` against.
                #[allow(unsafe_code)]
                let target = unsafe { std::slice::from_raw_parts_mut(value.data_ptr_mut().cast::<u8>(), len) };
                target.copy_from_slice(bytes);
            }
            Ok(value.into_dyn())
        }
        TensorData::Bytes(items) => {
            let strings = items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    std::str::from_utf8(item).map(str::to_string).map_err(|_| {
                        BackendError::InvalidInput(format!(
                            "input '{}': element {index} is not UTF-8, which ONNX string tensors require",
                            tensor.name()
                        ))
                    })
                })
                .collect::<Result<Vec<String>, _>>()?;
            let value = OrtTensor::from_string_array((shape, strings.as_slice()))
                .map_err(|error| BackendError::Inference(format!("cannot build input '{}': {error}", tensor.name())))?;
            Ok(value.into_dyn())
        }
    }
}

pub(crate) fn from_value(name: &str, value: &DynValue) -> Result<Tensor, BackendError> {
    let fail = |what: String| BackendError::Inference(format!("output '{name}': {what}"));
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(fail(format!("is a {:?}, not a tensor", value.dtype())));
    };
    let datatype = datatype(*ty).ok_or_else(|| fail(format!("element type {ty:?} has no V2 name")))?;
    let tensor = value.view().downcast::<ort::value::DynTensorValueType>().map_err(|error| fail(error.to_string()))?;
    let shape: Vec<i64> = tensor.shape().to_vec();
    let data = if datatype == DataType::Bytes {
        let (_, strings) = value.try_extract_strings().map_err(|error| fail(error.to_string()))?;
        TensorData::Bytes(strings.into_iter().map(Bytes::from).collect())
    } else {
        let count = yunmo_types::element_count_of(&shape).ok_or_else(|| fail("bad shape".to_string()))?;
        let len = count * datatype.element_size().unwrap_or(0);
        let bytes = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: ONNX Runtime owns `len` bytes of CPU memory behind a fixed-size tensor of this shape and
            // element type; `value` outlives the copy.
            #[allow(unsafe_code)]
            let view = unsafe { std::slice::from_raw_parts(tensor.data_ptr().cast::<u8>(), len) };
            view.to_vec()
        };
        TensorData::Fixed(Bytes::from(bytes))
    };
    Tensor::new(name, datatype, shape, data).map_err(|error| fail(error.to_string()))
}
