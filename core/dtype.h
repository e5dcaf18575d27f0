// Element types. f32 is the training type, f64 the gradient-check type, bf16 (bfloat16, core/bf16.h) a
// floating storage type: tensors hold it, cast, copy, print and save it, while the kernels, written for
// f32 and f64 (dispatch_float), refuse it. i32/i64 hold token and modality ids, u8/boolean hold bytes and
// masks (one byte per element).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/bf16.h"
#include "core/error.h"

namespace mom {

enum class DType : uint8_t { f32, f64, i32, i64, u8, boolean, bf16 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
    case DType::boolean: return 1;
    case DType::bf16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::boolean: return "bool";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}

// Floating dtypes: the ones that can require grad and that checkpoints hold as weights.
inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

// The dtype a floating dtype accumulates in: float32 for bfloat16, the dtype itself otherwise. Beside
// bf16 activations, the parameters and states that need the precision (biases, the scan's A, D and
// state, the conv's filters, norm weights) and every sum are float32.
inline DType acc_dtype(DType t) { return t == DType::bf16 ? DType::f32 : t; }

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::i32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::i64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::boolean; };
template <> struct DTypeOf<bf16> { static constexpr DType value = DType::bf16; };
template <typename T> constexpr DType dtype_of() { return DTypeOf<T>::value; }

}  // namespace mom

namespace mom {

// Calls f(TypeTag<T>{}) with T the C++ type of the dtype. The body names the type with MOM_TYPE:
//     dispatch_float(x.dtype(), "exp", [&](auto tag) {
//       using scalar_t = MOM_TYPE(tag);
//       ...
//     });
template <typename T> struct TypeTag { using type = T; };
#define MOM_TYPE(tag) typename decltype(tag)::type

// f32 and f64: the types every floating kernel is written for. Any other dtype, bf16 included, is
// refused with its name; a kernel takes bf16 once it has a bf16 version of its own.
template <typename F> decltype(auto) dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    default: MOM_THROW(op, "expects float32 or float64, got " << dtype_name(dt));
  }
}

// Every dtype (copies, casts, printing), bf16 through its conversions (core/bf16.h).
template <typename F> decltype(auto) dispatch_all(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::i32: return f(TypeTag<int32_t>{});
    case DType::i64: return f(TypeTag<int64_t>{});
    case DType::u8: return f(TypeTag<uint8_t>{});
    case DType::boolean: return f(TypeTag<bool>{});
    case DType::bf16: return f(TypeTag<bf16>{});
  }
  MOM_THROW(op, "unknown dtype");
}

// Index dtypes (token ids, modality ids, gather indices).
template <typename F> decltype(auto) dispatch_index(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::i32: return f(TypeTag<int32_t>{});
    case DType::i64: return f(TypeTag<int64_t>{});
    default: MOM_THROW(op, "indices must be int32 or int64, got " << dtype_name(dt));
  }
}

}  // namespace mom
