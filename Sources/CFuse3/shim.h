// libfuse3's high-level API at interface version 3.1. Its entry points are macros that pick a
// versioned symbol; Swift cannot call macros, so these inline wrappers do it.
#define FUSE_USE_VERSION 31
#include <fuse3/fuse.h>
#include <fuse3/fuse_lowlevel.h>

static inline struct fuse *thaw_fuse_new(struct fuse_args *args, const struct fuse_operations *op, void *private_data) {
    return fuse_new(args, op, sizeof(*op), private_data);
}

/* The 3.12 loop, whose configuration sets the worker thread count (3.1's fixes it at 10).
   Declared here because FUSE_USE_VERSION 31 hides it; libfuse3 exports it since 3.12. */
int fuse_loop_mt_312(struct fuse *f, struct fuse_loop_config *config);

/* Runs the multi-threaded loop with at most max_threads workers. Each worker serves one request
   at a time and a read waits for its chunk, so this bounds the reads served at once. */
static inline int thaw_fuse_loop_mt(struct fuse *f, unsigned int max_threads) {
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (config == NULL) return -1;
    fuse_loop_cfg_set_max_threads(config, max_threads);
    int result = fuse_loop_mt_312(f, config);
    fuse_loop_cfg_destroy(config);
    return result;
}


// Names a thread for `top -H` and debuggers; threads it starts inherit the name, so naming the
// thread that runs the loop names libfuse's workers too. glibc declares this only under
// _GNU_SOURCE, which the system modules Swift imports are not built with.
extern int pthread_setname_np(pthread_t thread, const char *name);

static inline int thaw_name_thread(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}
