#include <string.h>
#include <isa-l/erasure_code.h>
#include <isa-l/igzip_lib.h>

/* Helpers for inflating gzip streams with igzip, used by ThawImage's GzipSource. They keep
   Swift from touching inflate_state (87 KiB, with an anonymous union) field by field. */

static inline void thaw_inflate_set_input(struct inflate_state *state, uint8_t *next, uint32_t count) {
    state->next_in = next;
    state->avail_in = count;
}
static inline void thaw_inflate_set_output(struct inflate_state *state, uint8_t *next, uint32_t count) {
    state->next_out = next;
    state->avail_out = count;
}
static inline uint8_t *thaw_inflate_next_input(const struct inflate_state *state) { return state->next_in; }
static inline uint32_t thaw_inflate_input_left(const struct inflate_state *state) { return state->avail_in; }
static inline uint32_t thaw_inflate_output_left(const struct inflate_state *state) { return state->avail_out; }
static inline int thaw_inflate_finished(const struct inflate_state *state) { return state->block_state == ISAL_BLOCK_FINISH; }

/* Starts a gzip member: resets the state (keeping the input it has not read) and the header. */
static inline void thaw_inflate_start_gzip(struct inflate_state *state, struct isal_gzip_header *header) {
    uint8_t *next = state->next_in;
    uint32_t count = state->avail_in;
    isal_inflate_reset(state);
    state->crc_flag = ISAL_GZIP;
    state->next_in = next;
    state->avail_in = count;
    memset(header, 0, sizeof *header);
    isal_gzip_header_init(header);
}

/* Reads the member's header, if not read yet, into `header`, which lives as long as the member.
   isal_inflate would read it too, but with a fresh isal_gzip_header on each call whose flags
   isal_gzip_header_init leaves unset (ISA-L 2.30): a header that arrives in pieces, split inside
   the file name, was then misread. With the flags kept here, isal_inflate finds the header read
   and goes on to the data, and still checks the trailer.
   Returns ISAL_DECOMP_OK once the header is read, ISAL_END_INPUT when it needs more input, or
   a negative error. */
static inline int thaw_inflate_read_gzip_header(struct inflate_state *state, struct isal_gzip_header *header) {
    if (state->wrapper_flag) return ISAL_DECOMP_OK;
    return isal_read_gzip_header(state, header);
}
