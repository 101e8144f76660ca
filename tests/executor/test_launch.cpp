// Multi-process launch bookkeeping (executor/launch.hpp): rank, size and local rank from torchrun, Open MPI, MPI
// (PMI) and Slurm variables, bad values named, the NCCL unique id through hex, a file written atomically and read by
// a waiting rank; and the NCCL communicator's answer in a build without NCCL.
#include <catch2/catch.hpp>

#include <map>
#include <thread>

#include "common/error.hpp"
#include "executor/launch.hpp"
#include "executor/nccl_comm.hpp"
#include "moeplan/config.hpp"
#include "tests/executor/executor_test_util.hpp"

using namespace moeplan;

namespace {
// An environment of the given variables only.
std::function<const char*(const char*)> env(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}
}  // namespace

TEST_CASE("Process rank from each launcher's variables") {
  const auto none = executor::process_rank_from_environment(env({}));
  CHECK((none.rank == 0 && none.world_size == 1 && none.local_rank == 0));
  const auto torchrun = executor::process_rank_from_environment(env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}}));
  CHECK((torchrun.rank == 5 && torchrun.world_size == 8 && torchrun.local_rank == 1 && torchrun.launcher == "torchrun"));
  const auto ompi = executor::process_rank_from_environment(
      env({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "3"}}));
  CHECK((ompi.rank == 3 && ompi.world_size == 4 && ompi.local_rank == 3 && ompi.launcher == "Open MPI"));
  const auto slurm = executor::process_rank_from_environment(env({{"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"}}));
  CHECK((slurm.rank == 9 && slurm.world_size == 16 && slurm.local_rank == 1 && slurm.launcher == "Slurm"));
  const auto pmi = executor::process_rank_from_environment(env({{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}}));
  CHECK((pmi.rank == 2 && pmi.world_size == 3 && pmi.local_rank == 0));
  // torchrun's variables win over Slurm's (torchrun under srun)
  const auto both = executor::process_rank_from_environment(
      env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}));
  CHECK((both.rank == 1 && both.world_size == 2));
  // a rank without a size is not a launch
  CHECK(executor::process_rank_from_environment(env({{"RANK", "1"}})).world_size == 1);
}

TEST_CASE("Bad launcher values are refused naming the variable") {
  auto error = [](const std::map<std::string, std::string>& vars) {
    return test::error_of([&] { executor::process_rank_from_environment(env(vars)); });
  };
  CHECK(error({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x'") != std::string::npos);
  CHECK(error({{"RANK", "-1"}, {"WORLD_SIZE", "2"}}).find("RANK") != std::string::npos);
  CHECK(error({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("must be below WORLD_SIZE=2") != std::string::npos);
  CHECK(error({{"RANK", "0"}, {"WORLD_SIZE", "0"}}).find("WORLD_SIZE") != std::string::npos);
  CHECK(error({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "one"}}).find("SLURM_LOCALID") != std::string::npos);
}

TEST_CASE("NCCL unique ids round-trip through hex, the environment and an atomically written file") {
  executor::UniqueIdBytes id{};
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<unsigned char>(i * 37 + 11);
  const std::string hex = executor::unique_id_to_hex(id);
  CHECK(hex.size() == 256);
  CHECK(executor::unique_id_from_hex(hex, "x") == id);
  CHECK(test::error_of([&] { executor::unique_id_from_hex(hex.substr(1), "MOEPLAN_NCCL_ID"); }).find("MOEPLAN_NCCL_ID") == 0);
  CHECK_THROWS_AS(executor::unique_id_from_hex(std::string(256, 'g'), "x"), InputError);
  const auto from_env = executor::unique_id_source_from_environment(env({{"MOEPLAN_NCCL_ID", hex}, {"MOEPLAN_NCCL_ID_FILE", "/tmp/f"}}));
  REQUIRE(from_env.id);
  CHECK(*from_env.id == id);
  CHECK(from_env.file == "/tmp/f");
  CHECK(!executor::unique_id_source_from_environment(env({})).id);

  test::TempDir dir("nccl-id");
  const auto path = dir / "id";
  // a rank waiting for the file gets the id rank 0 writes later
  executor::UniqueIdBytes read{};
  std::thread reader([&] { read = executor::read_unique_id_file(path, std::chrono::seconds(20)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  executor::write_unique_id_file(path, id);
  reader.join();
  CHECK(read == id);
  CHECK(test::error_of([&] { executor::read_unique_id_file(dir / "never", std::chrono::milliseconds(50)); }).find("never") != std::string::npos);
  test::write_bytes(dir / "short", {std::byte{'a'}, std::byte{'b'}});
  CHECK_THROWS_AS(executor::read_unique_id_file(dir / "short", std::chrono::milliseconds(50)), InputError);
}

TEST_CASE("Without NCCL in the build, the NCCL communicators say so") {
  if (MOEPLAN_HAVE_NCCL) return;  // the GPU test (gpu.nccl) covers the real one
  CHECK_FALSE(executor::nccl_available());
  CHECK(test::error_of([] { executor::make_nccl_group(1); }).find("without NCCL") != std::string::npos);
  CHECK_THROWS_AS(executor::make_nccl_communicator({}, {}), InputError);
}
