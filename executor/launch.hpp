// executor/launch: how a multi-process run finds its place: this process's rank, the number of processes and its
// rank on this node (the GPU it drives), read from the variables the usual launchers set, and the NCCL unique id
// shared through a file (or an environment variable) that rank 0 writes and every other rank reads. Plain C++: the
// NCCL communicator (executor/nccl_comm.hpp) uses it, and it is tested without a GPU.
#pragma once
#include <array>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace moeplan::executor {

struct ProcessRank {
  int rank = 0;        // in [0, world_size)
  int world_size = 1;
  int local_rank = 0;  // on this node: the GPU index this process drives
  std::string launcher = "single process";  // which variables gave these: "torchrun", "Open MPI", "Slurm", ...
};

// Reads, first match wins: RANK / WORLD_SIZE / LOCAL_RANK (torchrun, and anything setting them by hand), then
// OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK (mpirun of Open MPI), PMI_RANK / PMI_SIZE with MPI_LOCALRANKID (MPICH
// and Intel MPI's Hydra), then SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (srun). None set: one process, rank 0.
// A local rank that is not set is 0. Throws InputError naming the variable when a value is not a non-negative
// integer, or the rank is not below the size. `getenv`: the environment lookup (std::getenv by default).
ProcessRank process_rank_from_environment(const std::function<const char*(const char*)>& getenv = nullptr);

// NCCL's ncclUniqueId is 128 opaque bytes (nccl.h: NCCL_UNIQUE_ID_BYTES).
constexpr std::size_t kUniqueIdBytes = 128;
using UniqueIdBytes = std::array<unsigned char, kUniqueIdBytes>;

std::string unique_id_to_hex(const UniqueIdBytes& id);  // 256 lowercase hex digits
// Throws InputError naming `what` unless `hex` is exactly 256 hex digits.
UniqueIdBytes unique_id_from_hex(const std::string& hex, const std::string& what);

// Rank 0 writes the id to `path` atomically (a temporary file in the same directory, then a rename), so a reader
// never sees half of it.
void write_unique_id_file(const std::filesystem::path& path, const UniqueIdBytes& id);
// The other ranks wait for the file, polling, up to `timeout`; throws InputError naming the path when it does not
// appear in time or does not hold an id.
UniqueIdBytes read_unique_id_file(const std::filesystem::path& path, std::chrono::milliseconds timeout);

// Where the id comes from: MOEPLAN_NCCL_ID (the hex id itself, for launchers that broadcast it), else the file
// named by MOEPLAN_NCCL_ID_FILE (a path on a file system every rank sees). Empty when neither is set.
struct UniqueIdSource {
  std::optional<UniqueIdBytes> id;  // from MOEPLAN_NCCL_ID
  std::filesystem::path file;       // from MOEPLAN_NCCL_ID_FILE
};
UniqueIdSource unique_id_source_from_environment(const std::function<const char*(const char*)>& getenv = nullptr);

}  // namespace moeplan::executor
