//! Recognises the seizure-model graph family in an ONNX protobuf and extracts its weights.
//!
//! The recognised chain, from the input to the `probs` output, is
//! `Unsqueeze(axis 1)`, `Conv`, `Relu`, `Conv` (kernel height = remaining frequency rows),
//! `Relu`, `Squeeze(axis 2)`, `Transpose(2,0,1)`, then one or more
//! `LSTM(bidirectional)`, `Transpose(0,2,1,3)`, `Reshape(0,0,-1)`, then `MatMul`, `Add`,
//! `Softmax(last axis)`. Every attribute and shape the native kernels rely on is checked; the
//! nodes computing the LSTM initial states must reduce to zeros. Anything else is refused.

use std::collections::HashMap;

use tract_onnx::pb;

use super::gemm::Weights;
use super::UnsupportedModel;

/// ONNX `TensorProto.DataType` codes used here.
const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// A 2-D convolution over (frequency, time), stride 1, no dilation, one group.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    pub out_ch: usize,
    pub in_ch: usize,
    pub kh: usize,
    pub kw: usize,
    /// Time padding on each side (the output keeps the input's number of columns).
    pub pad_w: usize,
    /// `[out][in][kh][kw]`, as ONNX.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One bidirectional LSTM layer in ONNX layout (gate order i, o, f, c).
#[derive(Debug, Clone)]
pub(crate) struct Lstm {
    pub hidden: usize,
    pub input: usize,
    /// `W^T` per direction (`[input][4 * hidden]`), laid out for the CPU's GEMM.
    pub w_t: Vec<Weights>,
    /// `R` per direction, transposed and blocked by `simd::pack_recurrent`
    /// (`4 * hidden * hidden` values per direction).
    pub r_packed: Vec<f32>,
    /// `Wb + Rb`: `[2][4 * hidden]`.
    pub bias: Vec<f32>,
}

/// Everything the native runtime needs, checked for mutual consistency.
#[derive(Debug, Clone)]
pub(crate) struct Structure {
    /// Frequency rows of the input (`x` is `[batch, bins, time]`).
    pub bins: usize,
    pub conv1: Conv,
    pub conv2: Conv,
    pub lstm: Vec<Lstm>,
    /// `[features][classes]`.
    pub fc_weight: Vec<f32>,
    pub fc_bias: Vec<f32>,
    pub classes: usize,
}

fn graph_err(reason: impl Into<String>) -> UnsupportedModel {
    UnsupportedModel::Graph(reason.into())
}

fn node_err(node: &pb::NodeProto, reason: impl Into<String>) -> UnsupportedModel {
    UnsupportedModel::Node {
        node: node.name.clone(),
        op: node.op_type.clone(),
        reason: reason.into(),
    }
}

/// A decoded constant: shape and values (floats or int64s).
#[derive(Debug, Clone)]
struct Constant {
    dims: Vec<usize>,
    floats: Vec<f32>,
    ints: Vec<i64>,
}

fn decode(t: &pb::TensorProto) -> Result<Constant, UnsupportedModel> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(graph_err(format!("tensor {:?} uses external data", t.name)));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| graph_err(format!("tensor {:?}: dim {d}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let len: usize = dims.iter().product();
    let (floats, ints) = match t.data_type {
        FLOAT if t.raw_data.is_empty() => (t.float_data.clone(), Vec::new()),
        FLOAT => (
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Vec::new(),
        ),
        INT64 if t.raw_data.is_empty() => (Vec::new(), t.int64_data.clone()),
        INT64 => (
            Vec::new(),
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
        other => {
            return Err(graph_err(format!(
                "tensor {:?} has data type {other} (only f32 and i64 are supported)",
                t.name
            )))
        }
    };
    if floats.len().max(ints.len()) != len {
        return Err(graph_err(format!(
            "tensor {:?}: {} values for shape {dims:?}",
            t.name,
            floats.len().max(ints.len())
        )));
    }
    Ok(Constant { dims, floats, ints })
}

/// The graph indexed by value name.
struct Index<'a> {
    constants: HashMap<&'a str, Constant>,
    producers: HashMap<&'a str, &'a pb::NodeProto>,
    input: &'a str,
}

impl<'a> Index<'a> {
    fn new(graph: &'a pb::GraphProto) -> Result<Self, UnsupportedModel> {
        let mut constants = HashMap::new();
        for t in &graph.initializer {
            constants.insert(t.name.as_str(), decode(t)?);
        }
        let mut producers = HashMap::new();
        for node in &graph.node {
            if !node.domain.is_empty() && node.domain != "ai.onnx" {
                return Err(node_err(node, format!("custom domain {:?}", node.domain)));
            }
            if node.op_type == "Constant" {
                let value = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| {
                        node_err(node, "only tensor-valued Constant nodes are supported")
                    })?;
                let out = node
                    .output
                    .first()
                    .ok_or_else(|| node_err(node, "no output"))?;
                constants.insert(out.as_str(), decode(value)?);
            }
            for out in &node.output {
                producers.insert(out.as_str(), node);
            }
        }
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !constants.contains_key(i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(graph_err(format!(
                "expected one graph input, found {}",
                inputs.len()
            )));
        };
        Ok(Self {
            constants,
            producers,
            input: input.name.as_str(),
        })
    }

    fn constant(&self, node: &pb::NodeProto, index: usize) -> Result<&Constant, UnsupportedModel> {
        node.input
            .get(index)
            .and_then(|name| self.constants.get(name.as_str()))
            .ok_or_else(|| node_err(node, format!("input {index} must be a constant")))
    }

    /// The non-constant input a chain node consumes.
    fn data_input(&self, node: &'a pb::NodeProto) -> Result<&'a str, UnsupportedModel> {
        if node.op_type == "LSTM" {
            return Ok(node.input.first().map_or("", String::as_str));
        }
        let data: Vec<&str> = node
            .input
            .iter()
            .map(String::as_str)
            .filter(|n| !n.is_empty() && !self.constants.contains_key(n))
            .collect();
        match data.as_slice() {
            [one] => Ok(one),
            _ => Err(node_err(
                node,
                format!("expected one data input, got {data:?}"),
            )),
        }
    }

    /// Whether a value is all zeros: absent, a zero constant, a zero `ConstantOfShape`, or a
    /// `Slice` of one (how PyTorch exports LSTM initial states).
    fn is_zero(&self, name: &str) -> bool {
        if name.is_empty() {
            return true;
        }
        if let Some(c) = self.constants.get(name) {
            return c.floats.iter().all(|&v| v == 0.0) && c.ints.iter().all(|&v| v == 0);
        }
        match self.producers.get(name) {
            Some(n) if n.op_type == "Slice" => n.input.first().is_some_and(|i| self.is_zero(i)),
            Some(n) if n.op_type == "ConstantOfShape" => match attr(n, "value") {
                None => true,
                Some(a) => a.t.as_ref().and_then(|t| decode(t).ok()).is_some_and(|c| {
                    c.floats.iter().all(|&v| v == 0.0) && c.ints.iter().all(|&v| v == 0)
                }),
            },
            _ => false,
        }
    }
}

fn attr<'n>(node: &'n pb::NodeProto, name: &str) -> Option<&'n pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints_attr(node: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// Refuses attributes outside `known`.
fn only_attrs(node: &pb::NodeProto, known: &[&str]) -> Result<(), UnsupportedModel> {
    match node
        .attribute
        .iter()
        .find(|a| !known.contains(&a.name.as_str()))
    {
        Some(a) => Err(node_err(
            node,
            format!("unsupported attribute {:?}", a.name),
        )),
        None => Ok(()),
    }
}

/// The chain of data nodes from the graph input to the `probs` output, input first.
fn chain<'a>(
    graph: &'a pb::GraphProto,
    index: &Index<'a>,
) -> Result<Vec<&'a pb::NodeProto>, UnsupportedModel> {
    let mut nodes = Vec::new();
    let mut value = "probs";
    if !graph.output.iter().any(|o| o.name == value) {
        return Err(graph_err("the model has no `probs` output"));
    }
    while value != index.input {
        let node = index
            .producers
            .get(value)
            .copied()
            .ok_or_else(|| graph_err(format!("value {value:?} has no producer")))?;
        if node.output.first().map(String::as_str) != Some(value) {
            return Err(node_err(node, "the chain must use the node's first output"));
        }
        nodes.push(node);
        if nodes.len() > 64 {
            return Err(graph_err("the chain from input to `probs` is too long"));
        }
        value = index.data_input(node)?;
    }
    nodes.reverse();
    Ok(nodes)
}

/// Reads the model; see the module doc for what is recognised.
pub(crate) fn recognise(model: &pb::ModelProto) -> Result<Structure, UnsupportedModel> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| graph_err("the model has no graph"))?;
    let index = Index::new(graph)?;
    let nodes = chain(graph, &index)?;
    let ops: Vec<&str> = nodes.iter().map(|n| n.op_type.as_str()).collect();
    let head = [
        "Unsqueeze",
        "Conv",
        "Relu",
        "Conv",
        "Relu",
        "Squeeze",
        "Transpose",
    ];
    let tail = ["MatMul", "Add", "Softmax"];
    let n_lstm = ops.len().saturating_sub(head.len() + tail.len()) / 3;
    let lstm_ops = ["LSTM", "Transpose", "Reshape"].repeat(n_lstm);
    let expected: Vec<&str> = head.iter().chain(&lstm_ops).chain(&tail).copied().collect();
    if n_lstm == 0 || ops != expected {
        return Err(graph_err(format!(
            "op sequence {ops:?} is not the recognised Conv/Conv/BiLSTM/Linear/Softmax family"
        )));
    }
    let bins = input_bins(graph, index.input)?;
    check_axes(&index, nodes[0], 1)?;
    let conv1 = conv(&index, nodes[1], 1)?;
    if conv1.kh > bins {
        return Err(node_err(nodes[1], "kernel taller than the input"));
    }
    let conv2 = conv(&index, nodes[3], conv1.out_ch)?;
    if conv2.kh != bins - conv1.kh + 1 {
        return Err(node_err(
            nodes[3],
            "kernel height must collapse the frequency axis to 1",
        ));
    }
    check_axes(&index, nodes[5], 2)?;
    check_perm(nodes[6], &[2, 0, 1])?;
    let mut lstm = Vec::new();
    let mut features = conv2.out_ch;
    for group in nodes[head.len()..head.len() + 3 * n_lstm].chunks_exact(3) {
        let layer = lstm_layer(&index, group[0], features)?;
        check_perm(group[1], &[0, 2, 1, 3])?;
        check_reshape(&index, group[2], 2 * layer.hidden)?;
        features = 2 * layer.hidden;
        lstm.push(layer);
    }
    let t = head.len() + 3 * n_lstm;
    let (fc_weight, fc_bias, classes) = linear(&index, nodes[t], nodes[t + 1], features)?;
    let softmax = nodes[t + 2];
    only_attrs(softmax, &["axis"])?;
    let axis = attr(softmax, "axis").map_or(-1, |a| a.i);
    if axis != 2 && axis != -1 {
        return Err(node_err(
            softmax,
            format!("axis {axis}, expected the class axis 2"),
        ));
    }
    Ok(Structure {
        bins,
        conv1,
        conv2,
        lstm,
        fc_weight,
        fc_bias,
        classes,
    })
}

fn input_bins(graph: &pb::GraphProto, name: &str) -> Result<usize, UnsupportedModel> {
    use pb::tensor_shape_proto::dimension::Value;
    use pb::type_proto::Value as TypeValue;
    let info = graph
        .input
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| graph_err("graph input not declared"))?;
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t,
        _ => return Err(graph_err("graph input is not a tensor")),
    };
    if tensor.elem_type != FLOAT {
        return Err(graph_err("graph input is not f32"));
    }
    let dims: Vec<Option<&Value>> = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| d.value.as_ref()).collect())
        .unwrap_or_default();
    match dims.as_slice() {
        [_, Some(Value::DimValue(bins)), _] if *bins > 0 => Ok(*bins as usize),
        _ => Err(graph_err(
            "graph input must be [batch, bins, time] with a fixed bins",
        )),
    }
}

/// `Unsqueeze`/`Squeeze` with exactly the given axis (as input or attribute).
fn check_axes(index: &Index<'_>, node: &pb::NodeProto, axis: i64) -> Result<(), UnsupportedModel> {
    only_attrs(node, &["axes"])?;
    let axes = match ints_attr(node, "axes") {
        Some(a) => a,
        None => index.constant(node, 1)?.ints.clone(),
    };
    if axes != [axis] {
        return Err(node_err(node, format!("axes {axes:?}, expected [{axis}]")));
    }
    Ok(())
}

fn check_perm(node: &pb::NodeProto, perm: &[i64]) -> Result<(), UnsupportedModel> {
    only_attrs(node, &["perm"])?;
    match ints_attr(node, "perm") {
        Some(p) if p == perm => Ok(()),
        p => Err(node_err(node, format!("perm {p:?}, expected {perm:?}"))),
    }
}

/// `Reshape` merging the direction and hidden axes: `[0, 0, -1]` or `[0, 0, features]`.
fn check_reshape(
    index: &Index<'_>,
    node: &pb::NodeProto,
    features: usize,
) -> Result<(), UnsupportedModel> {
    only_attrs(node, &["allowzero"])?;
    if attr(node, "allowzero").is_some_and(|a| a.i != 0) {
        return Err(node_err(node, "allowzero = 1"));
    }
    let shape = &index.constant(node, 1)?.ints;
    match shape.as_slice() {
        [0, 0, -1] => Ok(()),
        [0, 0, f] if *f == features as i64 => Ok(()),
        _ => Err(node_err(
            node,
            format!("shape {shape:?}, expected [0, 0, -1]"),
        )),
    }
}

fn conv(index: &Index<'_>, node: &pb::NodeProto, in_ch: usize) -> Result<Conv, UnsupportedModel> {
    only_attrs(
        node,
        &[
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
            "auto_pad",
        ],
    )?;
    let w = index.constant(node, 1)?;
    let [out_ch, w_in, kh, kw] = w.dims[..] else {
        return Err(node_err(
            node,
            format!("weight shape {:?} is not 4-D", w.dims),
        ));
    };
    if w_in != in_ch || kw % 2 == 0 {
        return Err(node_err(
            node,
            format!(
                "weight shape {:?}: expected {in_ch} input channels and an odd time kernel",
                w.dims
            ),
        ));
    }
    let ones = |name| ints_attr(node, name).is_none_or(|v| v.iter().all(|&x| x == 1));
    if !ones("dilations") || !ones("strides") || attr(node, "group").is_some_and(|a| a.i != 1) {
        return Err(node_err(node, "strides, dilations and group must be 1"));
    }
    if attr(node, "auto_pad").is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET") {
        return Err(node_err(node, "auto_pad is not supported"));
    }
    if ints_attr(node, "kernel_shape").is_some_and(|k| k != [kh as i64, kw as i64]) {
        return Err(node_err(node, "kernel_shape differs from the weight"));
    }
    let pad_w = kw / 2;
    let pads = ints_attr(node, "pads").unwrap_or_default();
    if pads != [0, pad_w as i64, 0, pad_w as i64] {
        return Err(node_err(node, format!("pads {pads:?}, expected [0, {pad_w}, 0, {pad_w}] (same length in time, none in frequency)")));
    }
    let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
        Some(_) => index.constant(node, 2)?.floats.clone(),
        None => vec![0.0; out_ch],
    };
    if bias.len() != out_ch || w.floats.is_empty() {
        return Err(node_err(node, "bias length or weight type mismatch"));
    }
    Ok(Conv {
        out_ch,
        in_ch,
        kh,
        kw,
        pad_w,
        weight: w.floats.clone(),
        bias,
    })
}

fn lstm_layer(
    index: &Index<'_>,
    node: &pb::NodeProto,
    input: usize,
) -> Result<Lstm, UnsupportedModel> {
    only_attrs(
        node,
        &["direction", "hidden_size", "layout", "input_forget"],
    )?;
    if attr(node, "direction").map(|a| a.s.as_slice()) != Some(b"bidirectional") {
        return Err(node_err(node, "only bidirectional LSTMs are supported"));
    }
    if attr(node, "layout").is_some_and(|a| a.i != 0)
        || attr(node, "input_forget").is_some_and(|a| a.i != 0)
    {
        return Err(node_err(node, "layout and input_forget must be 0"));
    }
    let hidden = attr(node, "hidden_size")
        .and_then(|a| usize::try_from(a.i).ok())
        .filter(|&h| h > 0)
        .ok_or_else(|| node_err(node, "hidden_size missing"))?;
    let w = index.constant(node, 1)?;
    let r = index.constant(node, 2)?;
    if w.dims != [2, 4 * hidden, input] || r.dims != [2, 4 * hidden, hidden] {
        return Err(node_err(
            node,
            format!(
                "W {:?} / R {:?} do not match hidden {hidden}, input {input}",
                w.dims, r.dims
            ),
        ));
    }
    let b = match node.input.get(3).filter(|n| !n.is_empty()) {
        Some(_) => index.constant(node, 3)?.clone(),
        None => Constant {
            dims: vec![2, 8 * hidden],
            floats: vec![0.0; 16 * hidden],
            ints: Vec::new(),
        },
    };
    if b.dims != [2, 8 * hidden] {
        return Err(node_err(
            node,
            format!("B {:?}, expected [2, {}]", b.dims, 8 * hidden),
        ));
    }
    if node.input.get(4).is_some_and(|s| !s.is_empty())
        || node.input.get(7).is_some_and(|p| !p.is_empty())
    {
        return Err(node_err(
            node,
            "sequence_lens and peepholes are not supported",
        ));
    }
    for (i, what) in [(5, "initial_h"), (6, "initial_c")] {
        if !index.is_zero(node.input.get(i).map_or("", String::as_str)) {
            return Err(node_err(node, format!("{what} must be zero")));
        }
    }
    // ONNX adds the input and recurrence biases; fold them once.
    let bias = (0..2)
        .flat_map(|d| {
            let row = &b.floats[d * 8 * hidden..(d + 1) * 8 * hidden];
            (0..4 * hidden).map(move |j| row[j] + row[4 * hidden + j])
        })
        .collect();
    let g4 = 4 * hidden;
    let mut r_t = vec![0.0; r.floats.len()];
    for (i, v) in r.floats.iter().enumerate() {
        let (d, row, k) = (i / (g4 * hidden), (i / hidden) % g4, i % hidden);
        r_t[(d * hidden + k) * g4 + row] = *v;
    }
    let r_packed = r_t
        .chunks_exact(g4 * hidden)
        .flat_map(|r_t| super::simd::pack_recurrent(r_t, hidden))
        .collect();
    let mut w_t = vec![0.0; w.floats.len()];
    for (i, v) in w.floats.iter().enumerate() {
        let (d, row, k) = (i / (g4 * input), (i / input) % g4, i % input);
        w_t[(d * input + k) * g4 + row] = *v;
    }
    let w_t = w_t
        .chunks_exact(input * g4)
        .map(|d| Weights::new(d.to_vec(), input, g4))
        .collect();
    Ok(Lstm {
        hidden,
        input,
        w_t,
        r_packed,
        bias,
    })
}

fn linear(
    index: &Index<'_>,
    matmul: &pb::NodeProto,
    add: &pb::NodeProto,
    features: usize,
) -> Result<(Vec<f32>, Vec<f32>, usize), UnsupportedModel> {
    only_attrs(matmul, &[])?;
    only_attrs(add, &[])?;
    if matmul
        .input
        .first()
        .is_some_and(|i| index.constants.contains_key(i.as_str()))
    {
        return Err(node_err(matmul, "the weight must be the right operand"));
    }
    let w = index.constant(matmul, 1)?;
    let [w_in, classes] = w.dims[..] else {
        return Err(node_err(
            matmul,
            format!("weight shape {:?} is not 2-D", w.dims),
        ));
    };
    if w_in != features || classes <= crate::model::SEIZURE_CLASS {
        return Err(node_err(
            matmul,
            format!(
                "weight shape {:?}: expected [{features}, > {}]",
                w.dims,
                crate::model::SEIZURE_CLASS
            ),
        ));
    }
    let bias_name = add
        .input
        .iter()
        .find(|n| index.constants.contains_key(n.as_str()))
        .ok_or_else(|| node_err(add, "no constant bias"))?;
    let bias = &index.constants[bias_name.as_str()];
    if bias.dims != [classes] {
        return Err(node_err(
            add,
            format!("bias shape {:?}, expected [{classes}]", bias.dims),
        ));
    }
    Ok((w.floats.clone(), bias.floats.clone(), classes))
}
