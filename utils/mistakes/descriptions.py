"""The one table of what a known mistake is called, for every lesson.

``DESCRIPTIONS`` maps a key per mistake to a template that completes the sentence "it looks
like ..." (``utils.diagnose.assert_close``'s ``mistakes=``), with fields for the words a lesson
uses (``N`` or ``N*H*W``, ``var`` or ``mean square``, ``dout`` or ``dy``). The first sections
hold the mistakes several lessons share; the later ones, a lesson's own (their keys start with
the normalization's name). Lesson check modules pick entries with ``describe``.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # --- forward: the statistics -------------------------------------------------------------
    "unbiased variance": "the variance is the unbiased one (ddof=1, divided by {m} - 1); batch "
    "norm normalizes with the biased variance (divided by {m})",
    "unbiased variance, uses": "the variance is the unbiased one (ddof=1, divided by {m} - 1); "
    "batch norm uses the biased one (divided by {m})",
    "unbiased variance, sets": "the variance is the unbiased one (ddof=1); normalization layers "
    "divide by the number of values in the set (the biased variance)",
    "unbiased variance, correction": "the variance is the unbiased one (correction=1, divided "
    "by M - 1); normalization uses the biased variance (divided by M, the number of values per "
    "channel)",
    "unbiased variance, count": "the variance is the unbiased one (divided by count - 1); batch "
    "norm divides by count",
    "statistics per sample": "the statistics are taken per sample (axis=1) instead of per "
    "feature over the batch (axis=0)",
    "statistics over everything": "the statistics are taken over the whole array instead of "
    "per feature (axis=0)",
    "variance is the std": "this is the standard deviation; the variance is its square",
    # --- forward: eps and the square root -----------------------------------------------------
    "eps outside sqrt": "eps is added outside the square root: {use}sqrt({v} + eps), not "
    "sqrt({v}) + eps",
    "eps missing": "eps is missing: divide by sqrt({v} + eps)",
    "eps fixed": "eps is fixed at {default} instead of using the eps argument",
    "std under sqrt": "the standard deviation went under the square root: sqrt(var + eps), not "
    "sqrt(std + eps)",
    "no square root": "{what} is divided by ({v} + eps) instead of by its square root",
    "times std": "x - mean is multiplied by the standard deviation (gamma * std); normalizing "
    "divides by it: y = gamma * (x - mean) / sqrt(var + eps) + beta",
    "inv_std is the std": "inv_std holds sqrt(var + eps); it should hold the inverse "
    "1 / sqrt(var + eps)",
    "inv_std without eps": "inv_std has no eps: 1 / sqrt(var + eps)",
    "inv_std eps outside": "inv_std has eps outside the square root: 1 / sqrt(var + eps)",
    "inv_std unbiased": "inv_std uses the unbiased variance (ddof=1)",
    # --- forward: gamma and beta --------------------------------------------------------------
    "gamma beta swapped": "gamma and beta are swapped: {out} = gamma * x_hat + beta",
    "no affine": "gamma and beta are not applied: out = gamma * x_hat + beta{not_x_hat}",
    "no gamma": "gamma is not applied: out = gamma * x_hat + beta",
    "no beta": "beta is not added: out = gamma * x_hat + beta",
    "affine along width": "gamma and beta of shape (C,) were broadcast along the last axis (W); "
    "reshape them to (1, C, 1, 1)",
    # --- backward: dx -------------------------------------------------------------------------
    "dx without mean term": "dx is missing the mean term (the -sum(dx_hat) / {m} that flows "
    "through the {mean})",
    "dx without mean term, sets": "dx is missing the mean term (the -mean(dx_hat) over each "
    "set, which flows through the mean)",
    "dx without variance term": "dx is missing the variance term (the -x_hat * sum(dx_hat * "
    "x_hat) / {m} that flows through the {variance})",
    "dx without variance term, sets": "dx is missing the variance term (the -x_hat * "
    "mean(dx_hat * x_hat) over each set, which flows through the variance)",
    "dx with constant statistics": "{statistics} are treated as constants (dx = gamma * inv_std "
    "* {dout}); they depend on x too",
    "dx with constant statistics, sets": "the statistics are treated as constants (dx = gamma "
    "* dout / sqrt(var + eps)); they depend on x too",
    "dx without gamma": "dx forgets gamma: dx_hat = {dout} * gamma, not {dout}",
    "dx with unbiased variance": "the backward uses the unbiased variance ({m} - 1) in the "
    "variance term; the forward divides by {m}",
    "dx with wrong power": "the variance term has the wrong power: d inv_std / d var = -1/2 "
    "(var + eps)^(-3/2)",
    "dx without eps": "the backward drops eps (1 / sqrt({v}) instead of {instead})",
    "dx sums over features": "the sums in dx run over the features (axis=1) instead of over the "
    "batch (axis=0)",
    "dx divides by M - 1": "dx divides the two sums by M - 1; the forward's statistics divide "
    "by M = N*H*W",
    # --- backward: dgamma and dbeta -----------------------------------------------------------
    "dgamma is sum(dout)": "dgamma is sum({upstream}): the x_hat factor is missing{swapped}",
    "dgamma uses x": "dgamma uses x instead of {x_hat}: dgamma = sum({upstream} * x_hat){over}",
    "dgamma averages": "dgamma averages; it is the sum over {axes}",
    "dbeta is sum(dout * x_hat)": "dbeta is sum({upstream} * x_hat): dgamma and dbeta are swapped",
    "dbeta averages over the batch": "dbeta averages dout over the batch; it is the sum",
    "dbeta averages": "dbeta averages {upstream}; it is the sum over {axes}",
    "dgamma dbeta swapped": "dgamma and dbeta are swapped",
    # --- lesson 06: spatial batch norm, x (N, C, H, W) ----------------------------------------
    "spatial per position": "the statistics are taken per position over the batch only "
    "(axis=0); a channel's statistics run over the batch and all positions, axis=(0, 2, 3)",
    "spatial over batch and channels": "the statistics are taken over the batch and the "
    "channels (axis=(0, 1)); they are per channel, over axis=(0, 2, 3)",
    "spatial instance norm": "the statistics are taken per example and channel (axis=(2, 3), "
    "instance norm); batch norm also averages over the batch, axis=(0, 2, 3)",
    "spatial layer norm": "the statistics are taken per example over (1, 2, 3) (layer norm); "
    "batch norm uses axis=(0, 2, 3)",
    "spatial over everything": "the statistics are taken over the whole array; they are per "
    "channel, axis=(0, 2, 3)",
    "spatial x reshaped": "x was reshaped to (-1, C) without moving the channel axis last, "
    "which mixes channels in every row: {route}",
    "spatial x reshaped, back right": "x was reshaped to (-1, C) without moving the channel "
    "axis last (the way back is right, but the rows mixed channels): {route}",
    "spatial x reshaped to rows": "x was reshaped to (-1, C) without moving the channel axis "
    "last: {route}",
    "spatial rows in (n, w, h)": "the rows hold positions in the order (n, w, h); the "
    "docstring asks for n, then h, then w: transpose with (0, 2, 3, 1)",
    "spatial rows put back": "the rows{of} were put back with reshape alone; reshape them to "
    "(N, H, W, C) and transpose with (0, 3, 1, 2)",
    "spatial sums divided by N": "the sums over (0, 2, 3) are divided by N instead of by "
    "N * H * W, the number of values of a channel",
    "spatial variance divided by N": "the variance's sum over (0, 2, 3) is divided by N "
    "instead of by N * H * W, the number of values of a channel",
    "spatial dx over the batch": "the sums in dx run over the batch axis only (axis=0); they "
    "run over axis=(0, 2, 3)",
    "spatial dx divided by N": "the sums in dx are divided by N instead of by N * H * W, the "
    "number of values of a channel",
    "spatial dx over the channels": "the sums in dx run over the channels (axis=1) instead of "
    "over axis=(0, 2, 3)",
    "spatial dout reshaped": "dout was reshaped to (-1, C) without moving the channel axis "
    "last: {route}",
    "spatial dx unbiased": "the backward uses the unbiased variance (N*H*W - 1); the forward "
    "divides by N*H*W",
    "spatial summed after reshape": "{which} was summed after reshape(-1, C) without moving "
    "the channel axis last",
    "spatial dgamma averages positions": "dgamma averages over the positions; it is the sum "
    "over (0, 2, 3)",
    # --- lesson 07: layer norm ----------------------------------------------------------------
    "layer over the batch": "the statistics are taken over the batch axis (axis=0): that is "
    "batch norm; layer norm takes them per sample over the last axis (axis=-1)",
    "layer over everything": "the statistics are taken over the whole array; layer norm takes "
    "them per sample over the last axis (axis=-1)",
    "layer per sample": "each sample is normalized over all its axes; layer norm normalizes "
    "over the last axis only (one mean per row, or per token)",
    "layer over axis 1": "the statistics are taken over axis=1; layer norm takes them over the "
    "last axis (axis=-1), which is axis 1 only for 2-D input",
    "layer not centered": "the mean is not subtracted (that is RMSNorm); layer norm centers "
    "each row first",
    "layer dx over the batch": "the sums in dx run over the batch axis (axis=0), as in batch "
    "norm; for layer norm they run over the last axis",
    # --- lesson 07: instance norm -------------------------------------------------------------
    "instance over the batch": "the statistics run over the batch too, axis=(0, 2, 3): that is "
    "batch norm; instance norm takes them per sample and channel, axis=(2, 3)",
    "instance over the channels": "the statistics are taken per sample over all channels, "
    "axis=(1, 2, 3): that is layer norm; instance norm takes them per channel, axis=(2, 3)",
    "instance over everything": "the statistics are taken over the whole array; instance norm "
    "uses axis=(2, 3)",
    "instance over one spatial axis": "the statistics run over one spatial axis only; a map's "
    "statistics run over both, axis=(2, 3)",
    "instance dx over the batch": "the sums in dx run over axis=(0, 2, 3), as in batch norm; "
    "for instance norm they run over each map, axis=(2, 3)",
    # --- lesson 07: group norm ----------------------------------------------------------------
    "group interleaved": "the groups are interleaved (channel c in group c % G); group g holds "
    "the contiguous channels g*C/G to (g+1)*C/G - 1, as x.reshape(N, G, -1) gives them",
    "group affine per group": "the affine is per group (gamma[g], beta[g] for every channel of "
    "group g); gamma and beta have one value per channel",
    "group size as count": "num_groups was used as the number of channels per group; it is the "
    "number of groups, x.reshape(N, num_groups, -1)",
    "group of all channels": "the statistics are taken over all channels at once (num_groups "
    "ignored, as if it were 1: layer norm)",
    "group per channel": "each channel is normalized on its own (num_groups ignored, as if it "
    "were C: instance norm)",
    "group per position": "the group statistics leave out the positions (one mean per group "
    "and position); a group's statistics run over its channels and all H * W positions",
    "group with the batch": "the group statistics include the batch axis; each sample has its own",
    "group dx over the batch": "the sums in dx run over the batch too; they run over each "
    "group of each sample",
    # --- lesson 07: RMS norm ------------------------------------------------------------------
    "rms centered": "the mean is subtracted (that is layer norm); RMSNorm divides x itself by "
    "its root mean square",
    "rms over the batch": "the root mean square is taken over the batch axis (axis=0); RMSNorm "
    "takes it per row over the last axis",
    "rms over everything": "the root mean square is taken over the whole array; RMSNorm takes "
    "it per row over the last axis (axis=-1)",
    "rms squares summed": "the squares are summed instead of averaged: sqrt(mean(x**2) + eps), "
    "not sqrt(sum(x**2) + eps)",
    "rms no gamma": "gamma is not applied: out = gamma * x / rms",
    "rms dx mean term": "dx has a mean term (-mean(dx_hat)), as in layer norm; RMSNorm "
    "subtracts no mean, so there is none",
    "rms dx without rms term": "dx is missing the term through the root mean square (-x_hat * "
    "mean(dx_hat * x_hat))",
    "rms dx over the batch": "the sums in dx run over the batch axis (axis=0); they run over "
    "the last axis",
    # --- lesson 09: BatchNormFunction (torch, any rank) ---------------------------------------
    "function over the batch axis": "the statistics are taken over the batch axis only "
    "(dim=0); they run over every axis except the channel axis 1",
    "function per example": "the statistics are taken per example (over every axis but 0); "
    "batch norm takes them per channel, over every axis except 1",
    "function mean term without gamma": "the mean term of dx sums dy without gamma; it is "
    "-sum(dx_hat) / M with dx_hat = gamma * dy",
    "function mean term flipped": "the mean term of dx has a flipped sign; it is subtracted: "
    "dx = inv_std / M * (M * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))",
    "function dx uses M - 1": "dx uses M - 1 where the closed form has M = N*H*W, the number "
    "of values per channel (the biased variance divides by M, so its gradient does too)",
    "function dx over the batch axis": "the sums in dx run over the batch axis only (dim=0); "
    "they run over every axis except 1, and M is the number of values per channel",
    # --- lesson 10: synchronized batch norm over ranks ----------------------------------------
    "sync local statistics": "each rank used the statistics of its own shard only (plain batch "
    "norm, no all_reduce): reduce the count, the sums and the squared deviations over all ranks",
    "sync unweighted": "the ranks' means (and variances) were averaged without weighting them "
    "by their counts; with unequal shards the global mean is sum(x) over all ranks / total "
    "count{here}",
    "sync mean of variances": "the variance is the (count-weighted) mean of the ranks' own "
    "variances, each around its shard's mean: that ignores how far the shard means lie from the "
    "global mean; reduce the squared deviations from the GLOBAL mean",
    "sync local count": "count is this rank's own count; all_reduce it",
    "sync count of samples": "count is the number of samples; a channel has N * H * W values",
    "sync count times world": "count is world_size times this rank's count; with unequal "
    "shards that is not the total: all_reduce the counts",
    "sync dx local sums": "the sums in dx are this rank's own (no all_reduce): dx needs the "
    "GLOBAL sums of dx_hat and of dx_hat * x_hat",
    "sync dx local sums and count": "the sums in dx are this rank's own and divided by its own "
    "count: reduce both sums over all ranks and divide by the global count",
    "sync dx local count": "dx is divided by this rank's count instead of the global count",
    "sync parameters all-reduced": "dgamma and dbeta were all-reduced, so every rank returns "
    "the global value and the data-parallel all-reduce of the parameter gradients counts it "
    "world_size times: return this rank's own sums",
    "sync rank returns the global sum": "this rank returns the GLOBAL sum (it was all-reduced); "
    "return this rank's own contribution, the sum over its shard: data-parallel training "
    "all-reduces parameter gradients afterwards and would count it world_size times",
    "sync rank parameters swapped": "dgamma and dbeta are swapped: dgamma = sum(dout * x_hat), "
    "dbeta = sum(dout)",
    "sync rank returns the average": "this rank returns the global sum divided by the number "
    "of ranks (an average over the ranks); return this rank's own contribution, the sum over "
    "its shard",
    # --- lesson 11: kernels: indexing, masks, accumulation ------------------------------------
    "channel is a contiguous block": "channel c was read as one contiguous block "
    "x[c*M:(c+1)*M]; in NCHW memory channel c of sample n starts at (n*C + c)*H*W",
    "channel index channels-last": "the channel of flat index i was taken as i % C (the "
    "channels-last layout); in NCHW it is (i // (H*W)) % C",
    "masked lanes counted": "the masked lanes of the last block entered the second pass: "
    "other=0.0 loads a 0 there, and (0 - mean)^2 is not 0 (keep them out with tl.where)",
    "one-pass variance": "the float64 cases pass but float32 with a large mean does not: the "
    "one-pass formula E[x^2] - E[x]^2 subtracts two numbers near 1e6 that float32 holds to "
    "0.06; use two passes over the channel or Welford/Chan merging",
}
"""key -> description template (fields in braces, filled by ``describe``)."""

BATCH = {
    "m": "N",
    "v": "var",
    "use": "use ",
    "default": "1e-5",
    "what": "(x - mean)",
    "out": "out",
    "not_x_hat": ", not x_hat",
    "mean": "batch mean",
    "variance": "batch variance",
    "statistics": "the batch mean and variance",
    "dout": "dout",
    "instead": "1 / sqrt(var + eps)",
    "upstream": "dout",
    "swapped": ", or dgamma and dbeta are swapped",
    "x_hat": "x_hat",
    "over": "",
    "axes": "axis=0",
    "route": "transpose to (N, H, W, C) first, e.g. x.transpose(0, 2, 3, 1).reshape(-1, C)",
    "of": "",
    "which": "dgamma",
    "here": "",
}
"""The words of lesson 02 (BatchNorm of x (N, D)); other lessons override some of them."""


def describe(key: str, **words: str) -> str:
    """The description of mistake ``key`` in ``DESCRIPTIONS``, its fields filled from ``words``
    over ``BATCH``: ``describe("eps outside sqrt", v="mean square")``."""
    return DESCRIPTIONS[key].format(**{**BATCH, **words})
