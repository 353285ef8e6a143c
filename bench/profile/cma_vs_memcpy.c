// Copy bandwidth of process_vm_readv (cross-memory attach, what single-copy transfers use)
// against memcpy on this machine: a child process holds a buffer, the parent reads it.
//
//   cc -O2 -o cma_vs_memcpy bench/profile/cma_vs_memcpy.c && ./cma_vs_memcpy MB [PIECE_KB]
//
// PIECE_KB: read in pieces of this size into a small buffer (as the receive-and-reduce path
// does, 64 KB); without it, one read of the whole buffer (as a plain receive does).
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static char* buffer(size_t n, int fill) {
  char* p = aligned_alloc(1 << 21, n);
  madvise(p, n, MADV_HUGEPAGE);
  memset(p, fill, n);
  return p;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MB [PIECE_KB]\n", argv[0]);
    return 2;
  }
  size_t n = (size_t)atol(argv[1]) << 20;
  size_t piece = argc > 2 ? (size_t)atol(argv[2]) << 10 : n;
  char* src = buffer(n, 1);
  pid_t child = fork();
  if (child == 0) {
    pause();  // holds `src` until killed
    return 0;
  }
  char* dst = buffer(n, 0);
  char* scratch = malloc(piece);
  for (int round = 0; round < 5; round++) {
    double t0 = now();
    memcpy(dst, src, n);
    double t1 = now();
    for (size_t off = 0; off < n; off += piece) {
      size_t len = n - off < piece ? n - off : piece;
      struct iovec local = {piece == n ? dst : scratch, len}, remote = {src + off, len};
      if (process_vm_readv(child, &local, 1, &remote, 1, 0) != (ssize_t)len) {
        perror("process_vm_readv");
        kill(child, SIGKILL);
        return 1;
      }
    }
    double t2 = now();
    printf("%zu MB, pieces of %zu KB: memcpy %.2f GB/s, process_vm_readv %.2f GB/s\n", n >> 20,
           piece >> 10, n / (t1 - t0) / 1e9, n / (t2 - t1) / 1e9);
  }
  kill(child, SIGKILL);
  wait(NULL);
  return 0;
}
