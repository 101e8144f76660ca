// executor/launch: process rank from the launcher's environment and the NCCL unique id exchange (see launch.hpp).
#include "executor/launch.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "common/files.hpp"

namespace moeplan::executor {

namespace {

using Getenv = std::function<const char*(const char*)>;

Getenv or_default(const Getenv& getenv) {
  if (getenv) return getenv;
  return [](const char* name) { return static_cast<const char*>(std::getenv(name)); };
}

int parse_count(const char* name, const char* value) {
  const std::string s(value);
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
    throw InputError("environment variable " + std::string(name) + "='" + s + "' is not a non-negative integer");
  return std::stoi(s);
}

struct Launcher {
  const char* name;
  const char* rank;
  const char* size;
  const char* local_rank;
};
// The first launcher whose rank and size variables are both set wins (see launch.hpp).
constexpr Launcher kLaunchers[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"MPI (PMI)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
    {"Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};

}  // namespace

ProcessRank process_rank_from_environment(const Getenv& getenv_in) {
  const Getenv getenv = or_default(getenv_in);
  for (const Launcher& l : kLaunchers) {
    const char* rank = getenv(l.rank);
    const char* size = getenv(l.size);
    if (!rank || !size) continue;
    ProcessRank p;
    p.launcher = l.name;
    p.rank = parse_count(l.rank, rank);
    p.world_size = parse_count(l.size, size);
    if (const char* local = getenv(l.local_rank)) p.local_rank = parse_count(l.local_rank, local);
    if (p.world_size < 1 || p.rank >= p.world_size)
      throw InputError(std::string(l.rank) + "=" + rank + " must be below " + l.size + "=" + size);
    return p;
  }
  return {};
}

std::string unique_id_to_hex(const UniqueIdBytes& id) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * id.size());
  for (const unsigned char b : id) {
    hex.push_back(digits[b >> 4]);
    hex.push_back(digits[b & 15]);
  }
  return hex;
}

UniqueIdBytes unique_id_from_hex(const std::string& hex, const std::string& what) {
  auto nibble = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  UniqueIdBytes id{};
  bool ok = hex.size() == 2 * id.size();
  for (std::size_t i = 0; ok && i < id.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    ok = hi >= 0 && lo >= 0;
    id[i] = static_cast<unsigned char>(ok ? hi * 16 + lo : 0);
  }
  if (!ok) throw InputError(what + ": an NCCL unique id is " + std::to_string(2 * id.size()) + " hex digits");
  return id;
}

void write_unique_id_file(const std::filesystem::path& path, const UniqueIdBytes& id) {
  write_file_atomic(path, unique_id_to_hex(id) + "\n");
}

UniqueIdBytes read_unique_id_file(const std::filesystem::path& path, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!std::filesystem::exists(path)) {
    if (std::chrono::steady_clock::now() >= deadline)
      throw InputError("NCCL unique id file " + path.string() + " did not appear within " +
                       std::to_string(timeout.count()) + " ms (rank 0 writes it; is MOEPLAN_NCCL_ID_FILE the same path on every rank?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::ifstream in(path);
  std::string hex;
  in >> hex;
  return unique_id_from_hex(hex, "NCCL unique id file " + path.string());
}

UniqueIdSource unique_id_source_from_environment(const Getenv& getenv_in) {
  const Getenv getenv = or_default(getenv_in);
  UniqueIdSource s;
  if (const char* hex = getenv("MOEPLAN_NCCL_ID")) s.id = unique_id_from_hex(hex, "MOEPLAN_NCCL_ID");
  if (const char* file = getenv("MOEPLAN_NCCL_ID_FILE")) s.file = file;
  return s;
}

}  // namespace moeplan::executor
