// A captured sequence of work on a device's stream, replayed with one launch (a CUDA graph). Plain C++
// (no CUDA headers), only compiled in CUDA builds (MOM_WITH_CUDA).
//
// capture(device, work) runs `work` with the device's stream in capture mode: the kernels it launches
// are recorded, not run, so work must launch only (no allocation, no copy from pageable host memory, no
// wait for the device) and must use the same buffers at every replay. replay() queues the whole
// recording on the stream, ordered like any other work there. A failure inside work ends the capture
// and rethrows; the graph stays empty.
#pragma once

#include <functional>

namespace mom::cuda {

class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  void capture(int device, const std::function<void()>& work);
  void replay();
  bool empty() const { return exec_ == nullptr; }

 private:
  void reset() noexcept;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  int device_ = -1;
};

}  // namespace mom::cuda
