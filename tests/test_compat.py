"""Backwards compatibility of the public API through issue 22: every name the modules exported before the
restructuring is still importable from its old module (a re-export where it moved), and is the very object of its
new home once that module exists. Names replaced on purpose are listed in REPLACED with what replaces them."""
import importlib
import importlib.util

import pytest

DONE = True   # issue 22's last step: every move must have happened
# old module.name -> new home (module), for the names that moved
MOVED = {
    'config.check_device': 'checks',
    'data.ChecksumError': 'datasets',
    'data.DATASETS': 'datasets',
    'data.DATASETS_MANIFEST': 'datasets',
    'data.DATASET_ALIASES': 'datasets',
    'data.DATA_ENV': 'datasets',
    'data.DEFAULT_DATA_ROOT': 'datasets',
    'data.DatasetSpec': 'datasets',
    'data.DownloadError': 'datasets',
    'data.IMAGE_EXTS': 'fileio',
    'data.ImageReadError': 'fileio',
    'data.MAX_IMAGE_PIXELS': 'fileio',
    'data.RAW_URL': 'datasets',
    'data.ROUNDING_SLACK': 'fileio',
    'data.STAMP': 'datasets',
    'data.atomic_path': 'fileio',
    'data.data_root': 'datasets',
    'data.download': 'datasets',
    'data.fetch_files': 'datasets',
    'data.file_stamp': 'datasets',
    'data.get_dataset': 'datasets',
    'data.read_image': 'fileio',
    'data.read_manifest': 'datasets',
    'data.source_url': 'datasets',
    'data.stale_temporaries': 'fileio',
    'data.stamped_folder': 'datasets',
    'data.to_rgb': 'fileio',
    'data.verify_files': 'datasets',
    'data.write_image': 'fileio',
    'evaluate.SHIPPED_STAGES': 'release',
    'evaluate.caption': 'metrics',
    'evaluate.comparison_grid': 'metrics',
    'evaluate.detail_box': 'metrics',
    'evaluate.shipped_readme': 'release',
    'evaluate.shipped_rows': 'release',
    'evaluate.write_shipped': 'release',
    'gan.GanWeights': 'method',
    'gan.RankContentLoss': 'method',
    'gan.checkpoint_path': 'stages',
    'gan.discriminator_losses': 'method',
    'gan.gan_state': 'train',
    'gan.gan_weights': 'train',
    'gan.generator_losses': 'method',
    'gan.load_fitting': 'stages',
    'gan.seed_profile': 'config',
    'gan.make_gan_step': 'method',
    'gan.pixel_probe': 'ranker',
    'gan.probe_crops': 'ranker',
    'gan.refine_pixels': 'ranker',
    'gan.train_gan': 'train',
    'gan.verdict': 'checks',
    'models.SAFE_GLOBALS': 'fileio',
    'models.UnreadableCheckpoint': 'fileio',
    'models.cache_dir': 'datasets',
    'models.load_pth': 'fileio',
    'multi.MultiRankerLoss': 'method',
    'ranker.make_ranker_step': 'method',
    'ranker.margin_rank_loss': 'method',
    'reproduce.render_docs': 'release',
    'train.CsvLog': 'stages',
    'train.FolderLocked': 'stages',
    'train.NonFiniteOutput': 'models',
    'train.STOP_SIGNALS': 'stages',
    'train.autocast': 'models',
    'train.build_discriminator': 'models',
    'train.build_generator': 'models',
    'train.build_vgg': 'models',
    'train.check_tile': 'models',
    'train.checkpoints': 'stages',
    'train.evaluate_generator': 'models',
    'train.final_path': 'stages',
    'train.folder_lock': 'stages',
    'train.latest_checkpoint': 'stages',
    'train.load_checkpoint': 'stages',
    'train.load_final': 'stages',
    'train.load_generator': 'models',
    'train.prepare_model': 'models',
    'train.read_log': 'stages',
    'train.receptive_radius': 'models',
    'train.resume_checkpoint': 'stages',
    'train.save_atomic': 'fileio',
    'train.save_final': 'stages',
    'train.stage_meta': 'stages',
    'train.super_resolve': 'models',
    'train.tiled_forward': 'models',
    'train.tiles': 'models',
}
# names that stay where they are
STAY = [
    'cli.EXISTING', 'cli.SHIPPED', 'cli.WEIGHTS_DIR', 'cli.find_weights', 'cli.generator_for', 'cli.image_inputs',
    'cli.load_sr_model', 'cli.main', 'cli.markdown_table', 'cli.metric_table', 'cli.parser', 'cli.sr_files',
    'config.CHOICES', 'config.MULTI_PREFIX', 'config.PROFILES', 'config.Profile', 'config.SEED_TAG', 'config.STAGES',
    'config.get_profile', 'config.project_root', 'config.resolve_dirs', 'config.seed_stage', 'config.split_seed',
    'config.stage_label', 'data.ImageSet', 'data.PairedPatchDataset', 'data.SAMPLE_IMAGES', 'data.SAMPLE_SCENES',
    'data.STRIPE_PIXELS', 'data.TestImageDataset', 'data.augment', 'data.bicubic_degrade', 'data.bicubic_upsample',
    'data.crop_border', 'data.cubic', 'data.img2tensor', 'data.imresize', 'data.list_images', 'data.load_images',
    'data.modcrop', 'data.profile_images', 'data.resize_band', 'data.resize_matrix', 'data.resize_stripes',
    'data.resize_taps', 'data.resolve_images', 'data.rgb2ycbcr', 'data.rgb_to_y', 'data.sample_images',
    'data.scene_of', 'data.stripe_rows', 'data.tensor2img', 'data.test_sets', 'evaluate.ARCHS', 'evaluate.BENCHMARKS',
    'evaluate.DECIMALS', 'evaluate.LABELS', 'evaluate.LITERATURE_BICUBIC', 'evaluate.Method',
    'evaluate.PAIRED_COLUMNS', 'evaluate.before_after', 'evaluate.before_after_widget', 'evaluate.bicubic_method',
    'evaluate.bicubic_vs_literature', 'evaluate.colour_check', 'evaluate.evaluate', 'evaluate.generator_method',
    'evaluate.generator_stages', 'evaluate.image_metrics', 'evaluate.method_cache', 'evaluate.metric_names',
    'evaluate.official_method', 'evaluate.paired_differences', 'evaluate.paired_markdown', 'evaluate.paired_stats',
    'evaluate.paired_table', 'evaluate.parse_official', 'evaluate.pd_plane', 'evaluate.pd_points',
    'evaluate.plot_paired', 'evaluate.results_table', 'evaluate.sr_image', 'evaluate.stage_methods',
    'evaluate.to_markdown', 'evaluate.visual_comparison', 'gan.gan_runs', 'gan.plot_convergence',
    'gan.rank_term_trend', 'gan.train_ranksrgan', 'metrics.AGGD_GRID', 'metrics.COLOUR_BLOCK', 'metrics.GRAY_WEIGHTS',
    'metrics.GRID_PERIOD', 'metrics.METRICS', 'metrics.MSCN_ZERO', 'metrics.Metric', 'metrics.NIQE_BLOCK',
    'metrics.NIQE_FEATURE_NAMES', 'metrics.SHIFTS', 'metrics.SIGMA_EPS', 'metrics.Scratch',
    'metrics.aggd_alpha_interp', 'metrics.aggd_fit_diff', 'metrics.block_features', 'metrics.block_features_diff',
    'metrics.box_mean', 'metrics.ciede2000', 'metrics.colour_error_map', 'metrics.delta_e',
    'metrics.gaussian_kernel1d', 'metrics.get_metric', 'metrics.grid_argmin', 'metrics.grid_bins',
    'metrics.grid_ratios', 'metrics.grid_score', 'metrics.luma', 'metrics.mscn', 'metrics.mscn_diff',
    'metrics.mvg_distance', 'metrics.niqe', 'metrics.niqe_diff', 'metrics.niqe_features',
    'metrics.niqe_features_diff', 'metrics.niqe_features_striped', 'metrics.niqe_luma', 'metrics.niqe_min_size',
    'metrics.niqe_pristine_params', 'metrics.orient', 'metrics.psnr', 'metrics.register_metric', 'metrics.sep_filter',
    'metrics.sharpness', 'metrics.ssim', 'models.CheckpointError', 'models.Discriminator', 'models.IMAGENET_MEAN',
    'models.IMAGENET_STD', 'models.RRDB', 'models.RRDBNet', 'models.RandomVGGWarning', 'models.Ranker',
    'models.ResidualBlockNoBN', 'models.ResidualDenseBlock', 'models.SRResNet', 'models.VGG19_BLOCKS',
    'models.VGG19_FILE', 'models.VGG19_HASH', 'models.VGG19_URL', 'models.VGGFeatures', 'models.VGG_RANDOM_SEED',
    'models.count_params', 'models.identity_init', 'models.load_official', 'models.map_official',
    'models.unwrap_state_dict', 'models.vgg19_layer_names', 'models.warn_random_vgg', 'multi.LEVEL_RANKER_LEVELS',
    'multi.RankerTerm', 'multi.parse_weight_grid', 'multi.setting_stage', 'multi.train_multi_ranksrgan',
    'ranker.CrossPairs', 'ranker.PAIR_ORDER', 'ranker.PAIR_ORDERS', 'ranker.RankData', 'ranker.RankPairDataset',
    'ranker.admit_levels', 'ranker.batch_means', 'ranker.batch_order', 'ranker.bn_mode', 'ranker.build_rank_dataset',
    'ranker.cap_per_image', 'ranker.colocated_pair', 'ranker.crop_windows', 'ranker.ensure_rank_dataset',
    'ranker.ensure_test_tuples', 'ranker.evaluate_ranker', 'ranker.homogeneous_batches', 'ranker.label_noise',
    'ranker.label_scores', 'ranker.label_windows', 'ranker.labelled', 'ranker.level_checkpoint',
    'ranker.level_method', 'ranker.level_name', 'ranker.level_stats', 'ranker.load_ranker', 'ranker.ordered',
    'ranker.pair_stats', 'ranker.per_window_srcc', 'ranker.random_box', 'ranker.rank_metrics', 'ranker.ranker_checks',
    'ranker.ranker_pairs', 'ranker.read_rank_dataset', 'ranker.robust_sd', 'ranker.same_crop',
    'ranker.select_windows', 'ranker.separated', 'ranker.sharpness_threshold', 'ranker.shifted',
    'ranker.split_scenes', 'ranker.sr_outputs', 'ranker.train_ranker', 'ranker.window_grid', 'ranker.window_scores',
    'ranker.window_starts', 'ranker.window_table', 'ranker.write_checks', 'ranker.write_labels',
    'ranker.write_rank_dataset', 'ranker.write_tuples', 'reproduce.PIPELINE', 'reproduce.StageFailed',
    'reproduce.StageResult', 'reproduce.check_parameters', 'reproduce.main', 'reproduce.notebook_parameters',
    'reproduce.notebooks_dir', 'reproduce.parser', 'reproduce.reproduce', 'reproduce.retire',
    'reproduce.run_notebook', 'reproduce.select', 'reproduce.stage_folders', 'train.ARCH_KEYS', 'train.TrainState',
    'train.TrainingDiverged', 'train.batches', 'train.fit', 'train.make_sr_step', 'train.multistep',
    'train.pick_device', 'train.rng_state', 'train.seed_everything', 'train.set_rng_state', 'train.stage_loader',
    'train.test_set', 'train.train_set', 'train.train_srresnet', 'train.validation_set',
]
# replaced on purpose (issue 22): old module.name -> what to use instead
REPLACED = {
    'gan.ensure_gan_runs': 'ensure_arms(cfg, run_dir)',
    'gan.ensure_ranksrgan': "ensure(arm_stage('ranksrgan', seed), cfg, run_dir)",
    'gan.ensure_srgan': 'ensure(SRGAN, cfg, run_dir)',
    'gan.ensure_srgan_plus': 'ensure(SRGAN_PLUS, cfg, run_dir)',
    'gan.level_builder': 'ensure(stage) in the notebook that needs the level',
    'metrics.aggd_fit': 'aggd_solve(*aggd_moments(v), n)',
    'multi.ensure_level_ranker': 'ensure(LEVEL_RANKER, cfg, run_dir)',
    'multi.level_profile': 'level_order_profile',
    'ranker.ensure_ranker': 'ensure(RANKERS[cfg.ranker_design], cfg, run_dir)',
    'ranker.ranker_stage': 'RANKERS[design].name',
    'train.ensure_srresnet': 'ensure(SRRESNET, cfg, run_dir)',
    'train.ensure_stage': 'stages.ensure',
}


def _get(dotted: str):
    mod, name = dotted.rsplit('.', 1)
    return getattr(importlib.import_module(f'ranksrgan_nb.{mod}'), name)


@pytest.mark.parametrize('dotted', sorted(MOVED) + STAY)
def test_old_import_path_still_works(dotted):
    _get(dotted)


@pytest.mark.parametrize('dotted', sorted(MOVED))
def test_moved_name_is_the_object_of_its_new_home(dotted):
    home, name = MOVED[dotted], dotted.rsplit('.', 1)[1]
    moved = importlib.util.find_spec(f'ranksrgan_nb.{home}') is not None and \
        hasattr(importlib.import_module(f'ranksrgan_nb.{home}'), name)
    if not moved:
        if DONE: pytest.fail(f'{dotted} has not moved to {home}')
        pytest.skip(f'not moved to {home} yet')
    assert _get(dotted) is _get(f'{home}.{name}')
