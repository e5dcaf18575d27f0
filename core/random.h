// A seeded generator that gives the same numbers on every machine: SplitMix64 seeds a xoshiro256**
// state; uniforms take the top 53 bits; normals use the Box-Muller transform (both values are used).
#pragma once

#include <array>
#include <cstdint>

namespace mom {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0);
  uint64_t next_u64();
  double uniform();          // [0, 1)
  double normal();           // N(0, 1)
  uint64_t randint(uint64_t n);  // [0, n)

  // The full state, for checkpoints that resume bit-exactly.
  struct State {
    std::array<uint64_t, 4> s;
    bool has_spare;
    double spare;
  };
  State state() const { return {s_, has_spare_, spare_}; }
  void set_state(const State& st) { s_ = st.s; has_spare_ = st.has_spare; spare_ = st.spare; }

 private:
  std::array<uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace mom
