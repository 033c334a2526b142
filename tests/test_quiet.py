"""Library warnings that a pipeline would otherwise repeat: the random-VGG19 notice is shown once per message."""
import subprocess
import sys
import textwrap


def test_random_vgg_warning_once_per_message_without_source_line():
    code = textwrap.dedent('''
        import warnings
        from ranksrgan_nb.config import get_profile
        from ranksrgan_nb.models import RandomVGGWarning, VGGFeatures
        from ranksrgan_nb.gan import gan_weights
        for _ in range(3):
            with warnings.catch_warnings(): warnings.simplefilter('ignore', DeprecationWarning)'''
        # the script's line goes on in the next literal (split for line length only)
        '''   # filters change between builds
            gan_weights(get_profile('smoke'), VGGFeatures('conv1_2', weights='random'))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            VGGFeatures('conv1_2', weights='random')
        assert len(w) == 1 and issubclass(w[0].category, RandomVGGWarning)      # an 'always' filter still sees it
        with warnings.catch_warnings():
            warnings.simplefilter('error', RandomVGGWarning)
            try: VGGFeatures('conv1_2', weights='random'); raise SystemExit('no error')
            except RandomVGGWarning: pass
    ''')
    r = subprocess.run([sys.executable, '-W', 'default', '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr                                   # two messages, each once, nothing echoed
    assert lines[0].startswith('ranksrgan_nb:0: RandomVGGWarning: VGGFeatures: random VGG19 weights')
    assert lines[1] == ('ranksrgan_nb:0: RandomVGGWarning: VGG19 is random: '
                        'perceptual weight 100.0 (w_fea_random) instead of 1.0')
