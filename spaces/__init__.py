"""What a network can be: candidate blocks, skeletons, heads, genotypes, the supernet and MAC/param counting."""

from spaces.counting import count_macs, count_params
from spaces.genotype import Genotype, extremes, largest, sample, sample_of, smallest
from spaces.network import Network, build, zero_init_residuals
from spaces.space import SKELETONS, SPACES, Skeleton, skeleton, space_of
from spaces.supernet import Supernet

__all__ = [
    "Genotype", "Network", "SKELETONS", "SPACES", "Skeleton", "Supernet", "build", "count_macs", "count_params",
    "extremes", "largest", "sample", "sample_of", "skeleton", "smallest", "space_of", "zero_init_residuals",
]
