// core/cuda/graph.h: stream capture into a cudaGraph_t, instantiated once, launched on replay.
#include "core/cuda/graph.h"
#include "core/cuda/stream.h"

namespace mom::cuda {

Graph::~Graph() { reset(); }

void Graph::reset() noexcept {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
}

void Graph::capture(int device, const std::function<void()>& work) {
  reset();
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  MOM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    work();
  } catch (...) {
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  MOM_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  graph_ = graph;
  cudaGraphExec_t exec = nullptr;
  MOM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  exec_ = exec;
  device_ = device;
}

void Graph::replay() {
  MOM_CHECK(exec_ != nullptr, "cuda", "replay of a graph that holds no capture");
  DeviceGuard guard(device_);
  MOM_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream(device_)));
}

}  // namespace mom::cuda
