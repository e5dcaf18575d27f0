// The public API in one include: tensors and their factories, devices, the seeded generator,
// safetensors files, the differentiable ops, grad mode and backward, the modules (dense Mamba,
// Mixture-of-Mamba, the LM and its fast recurrent Decoder) and AdamW with clipping and the
// learning-rate schedule.
//
//   #include <mom/mom.h>     // in the repository and from an installed package (find_package(mom))
//
// The headers it names are found as "core/tensor.h" etc.: from the repository root in the build, from
// <prefix>/include/mom once installed. Everything lives in namespace mom (modules in mom::nn, the
// optimiser in mom::optim); user-caused problems throw mom::Error.
#pragma once

#include "core/device.h"
#include "core/error.h"
#include "core/random.h"
#include "core/safetensors.h"
#include "core/tensor.h"

#include "autograd/causal_conv1d.h"
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/masked_linear.h"
#include "autograd/ops.h"
#include "autograd/selective_scan.h"

#include "nn/decoder.h"
#include "nn/layers.h"
#include "nn/lm.h"
#include "nn/mamba.h"
#include "nn/module.h"

#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
