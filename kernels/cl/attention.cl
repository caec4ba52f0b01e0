/* kernels/cl/attention.cl — causal attention of queries over a paged KV cache, split over chunks of
 * positions (flash-decoding) and merged.
 * KV layout (the engine's, engine/kv.h): one pool buffer per K and V (they may be the same buffer);
 * a query's block table tbl[q][max_blocks] holds the element offset of each block's base; position p
 * of KV head g is at pool[tbl[q][p / blk] + off + (p % blk) · pos_stride + g · hd] (off = k_off or
 * v_off, e.g. a layer's offset inside a block). Query q attends to its positions [0, n_kv[q]).
 * GQA: the G = n_head / n_head_kv query heads of a KV head share one work-group, so each K and V row
 * is read once per split. Scores, softmax and the weighted sums are f32. */

/* Work-group (split, kv head, query). part[q][h][split] = {o[hd] = Σ e^{s-m} v, m, l = Σ e^{s-m}}
 * over the split's positions [split · chunk, min(n_kv, (split + 1) · chunk)); an empty split writes
 * m = -inf, l = 0. Local: ql G·hd, sl G·chunk, scratch get_local_size(0) floats. */
kernel void attn_split(global const ACT *q, int q_stride, global const ACT *kpool, global const ACT *vpool,
                       global const int *tbl, int max_blocks, int blk, int k_off, int v_off, int pos_stride,
                       global const int *n_kv, int n_head, int n_head_kv, int hd, float scale, int chunk,
                       global float *part, local float *ql, local float *sl, local float *scratch) {
    int split = get_group_id(0), kvh = get_group_id(1), qi = get_group_id(2), n_split = get_num_groups(0);
    int lid = get_local_id(0), L = get_local_size(0), G = n_head / n_head_kv;
    int p0 = split * chunk, p1 = min(p0 + chunk, n_kv[qi]), np = p1 - p0;
    size_t rec = (size_t)hd + 2; /* floats per partial record */
    global float *out = part + (((size_t)qi * n_head + (size_t)kvh * G) * n_split + split) * rec;
    size_t hstride = (size_t)n_split * rec; /* between the records of consecutive heads */
    global const int *bt = tbl + (size_t)qi * max_blocks;
    if (np <= 0) { /* uniform over the work-group */
        for (int h = 0; h < G; h++) {
            for (int i = lid; i < hd; i += L) out[h * hstride + i] = 0.0f;
            if (lid == 0) {
                out[h * hstride + hd] = -INFINITY;
                out[h * hstride + hd + 1] = 0.0f;
            }
        }
        return;
    }
    for (int i = lid; i < G * hd; i += L) ql[i] = LD(q, (size_t)qi * q_stride + (size_t)kvh * G * hd + i);
    barrier(CLK_LOCAL_MEM_FENCE);
    /* scores: a work-item per position, the G heads 8 at a time */
    for (int j = lid; j < np; j += L) {
        int p = p0 + j;
        size_t kb = (size_t)bt[p / blk] + (size_t)k_off + (size_t)(p % blk) * pos_stride + (size_t)kvh * hd;
        for (int h0 = 0; h0 < G; h0 += 8) {
            float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            for (int i = 0; i < hd; i++) {
                float kv = LD(kpool, kb + i);
                for (int hh = 0; hh < 8; hh++)
                    if (h0 + hh < G) acc[hh] = fma(ql[(h0 + hh) * hd + i], kv, acc[hh]);
            }
            for (int hh = 0; hh < 8; hh++)
                if (h0 + hh < G) sl[(h0 + hh) * chunk + j] = acc[hh] * scale;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* per head: max, e^{s-m} in place, sum */
    for (int h = 0; h < G; h++) {
        float mx = -INFINITY;
        for (int j = lid; j < np; j += L) mx = fmax(mx, sl[h * chunk + j]);
        mx = wg_max(mx, scratch);
        float sum = 0.0f;
        for (int j = lid; j < np; j += L) {
            float e = exp(sl[h * chunk + j] - mx);
            sl[h * chunk + j] = e;
            sum += e;
        }
        sum = wg_sum(sum, scratch);
        if (lid == 0) {
            out[h * hstride + hd] = mx;
            out[h * hstride + hd + 1] = sum;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* o = Σ_p e_p v_p: a work-item per dimension (neighbours read neighbouring V elements) */
    for (int i = lid; i < hd; i += L) {
        for (int h0 = 0; h0 < G; h0 += 8) {
            float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            for (int j = 0; j < np; j++) {
                int p = p0 + j;
                float vv = LD(vpool, (size_t)bt[p / blk] + (size_t)v_off + (size_t)(p % blk) * pos_stride +
                                         (size_t)kvh * hd + i);
                for (int hh = 0; hh < 8; hh++)
                    if (h0 + hh < G) acc[hh] = fma(sl[(h0 + hh) * chunk + j], vv, acc[hh]);
            }
            for (int hh = 0; hh < 8; hh++)
                if (h0 + hh < G) out[(h0 + hh) * hstride + i] = acc[hh];
        }
    }
}

/* Work-group (head, query): out[q][h] = Σ_s e^{m_s - M} o_s / Σ_s e^{m_s - M} l_s. */
kernel void attn_merge(global const float *part, int n_split, int hd, int n_head, global ACT *out, int out_stride) {
    int h = get_group_id(0), qi = get_group_id(1), lid = get_local_id(0), L = get_local_size(0);
    size_t rec = (size_t)hd + 2;
    global const float *base = part + ((size_t)qi * n_head + h) * n_split * rec;
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmax(M, base[s * rec + hd]);
    float l = 0.0f;
    for (int s = 0; s < n_split; s++) {
        float ms = base[s * rec + hd];
        if (ms > -INFINITY) l += exp(ms - M) * base[s * rec + hd + 1];
    }
    float inv = 1.0f / l;
    for (int i = lid; i < hd; i += L) {
        float o = 0.0f;
        for (int s = 0; s < n_split; s++) {
            float ms = base[s * rec + hd];
            if (ms > -INFINITY) o = fma(exp(ms - M), base[s * rec + i], o);
        }
        ST(o * inv, out, (size_t)qi * out_stride + (size_t)h * hd + i);
    }
}
