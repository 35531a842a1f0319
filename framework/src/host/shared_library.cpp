#include <shrink/host/shared_library.hpp>

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <fstream>

namespace shrink {

namespace {

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
#else
#error "Shrink's plugin loader knows x86_64 and aarch64 only"
#endif

// Whether `count` entries of `each` bytes from `offset` end within `size` bytes, without the
// overflow that would let a crafted header pass.
bool fits(uint64_t offset, uint64_t count, uint64_t each, uint64_t size) {
  if (offset > size) return false;
  return each == 0 || count <= (size - offset) / each;
}

}  // namespace

std::string check_shared_library(const std::string& file) {
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  if (!in) return "cannot be read";
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  Elf64_Ehdr header;
  in.read(reinterpret_cast<char*>(&header), sizeof(header));
  if (in.gcount() < 4 || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) {
    return "not a shared library (no ELF header); skipped";
  }
  if (static_cast<std::size_t>(in.gcount()) < sizeof(header)) {
    return "corrupt shared library: truncated ELF header";
  }
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_machine != kHostMachine) {
    return "shared library for another machine (ELF class " +
           std::to_string(header.e_ident[EI_CLASS]) + ", machine " +
           std::to_string(header.e_machine) + ")";
  }
  if (header.e_type != ET_DYN) return "an ELF file but not a shared library";
  if (!fits(header.e_phoff, header.e_phnum, header.e_phentsize, size) ||
      !fits(header.e_shoff, header.e_shnum, header.e_shentsize, size)) {
    return "corrupt shared library: truncated (" + std::to_string(size) +
           " bytes, its headers point past the end)";
  }
  for (uint16_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr ph;
    in.seekg(static_cast<std::streamoff>(header.e_phoff + uint64_t{i} * header.e_phentsize));
    in.read(reinterpret_cast<char*>(&ph), sizeof(ph));
    if (static_cast<std::size_t>(in.gcount()) < sizeof(ph))
      return "corrupt shared library: bad program header";
    if (ph.p_type == PT_LOAD && !fits(ph.p_offset, 1, ph.p_filesz, size)) {
      return "corrupt shared library: truncated (" + std::to_string(size) +
             " bytes, a segment of " + std::to_string(ph.p_filesz) + " bytes at " +
             std::to_string(ph.p_offset) + ")";
    }
  }
  return "";
}

}  // namespace shrink
