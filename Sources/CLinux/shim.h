#include <sys/prctl.h>

/* prctl is variadic, which Swift cannot call: one wrapper per use. */

/* Turns transparent huge pages off for this process and the children it starts from now on
   (kept across fork and exec), so faults on a lazily served file read pages, not megabytes. */
static inline int thaw_disable_transparent_huge_pages(void) {
    return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
}
