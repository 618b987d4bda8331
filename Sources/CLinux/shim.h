#include <errno.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* prctl and syscall are variadic, which Swift cannot call, and a BPF program is built from C
   macros: one wrapper per use. */

/* Makes madvise(MADV_HUGEPAGE) fail with EINVAL on the calling thread and in every process it
   starts from now on (a seccomp filter is kept across fork and exec); every other call is
   allowed as before.

   Why: qemu advises huge pages on all guest RAM. On a file mapping that advice makes each page
   fault read a whole 2 MiB folio, twice over, through the kernel's readahead code, even when the
   file's readahead is off and even when transparent huge pages are disabled for the process or
   the system. For a RAM file served lazily from a chunk store, that turns a 4 KiB fault into
   4 MiB of fetches. qemu ignores a failed madvise, so refusing the advice is all it takes.

   Only the calling thread gets the filter (no SECCOMP_FILTER_FLAG_TSYNC): call it on a thread
   that only starts the child and then ends. It also sets no_new_privs on that thread, which
   seccomp requires of an unprivileged caller. Returns 0, or -1 with errno set. */
static inline int thaw_refuse_huge_page_advice(void) {
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_HUGEPAGE, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EINVAL & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog filter = { .len = sizeof(program) / sizeof(program[0]), .filter = program };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter);
}
