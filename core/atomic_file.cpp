#include "core/atomic_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "core/error.h"

namespace mom {

void write_file_atomically(const std::string& path, const char* op, const std::function<void(const ByteSink&)>& fill) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  MOM_CHECK(f != nullptr, op, path << ": cannot open " << tmp << " for writing: " << std::strerror(errno));
  try {
    fill([&](const void* data, size_t n) {
      MOM_CHECK(n == 0 || std::fwrite(data, 1, n, f) == n, op, path << ": write failed (disk full?)");
    });
    MOM_CHECK(std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0, op, path << ": flush failed");
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  MOM_CHECK(std::fclose(f) == 0, op, path << ": close failed");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    MOM_THROW(op, path << ": cannot rename " << tmp << " over it: " << std::strerror(errno));
  }
}

}  // namespace mom
