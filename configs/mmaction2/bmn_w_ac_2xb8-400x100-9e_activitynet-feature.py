"""BMNwActionCls (BMN with an action-classification head) on ActivityNet-1.3 400-d features, for
MMAction2's own ``tools/train.py`` and ``tools/test.py`` (run from the repository root).

Everything but the model and the training labels is MMAction2's config, inherited from the
installed mmaction2 package: dataset, pipelines, schedule, runtime and the AR@AN metric.
tools/test.py (and train.py --resume) on torch >= 2.6 need TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1:
mmengine 0.10.7 loads its own checkpoints, which pickle its message hub, with torch.load's
default weights_only; set it only for checkpoints you trust.
"""

_base_ = "mmaction::localization/bmn/bmn_2xb8-400x100-9e_activitynet-feature.py"

custom_imports = dict(imports=["core.mmaction"], allow_failed_imports=False)

model = dict(type="BMNwActionCls", num_action_classes=200)

# The 200 ActivityNet-1.3 classes in label-id order: MMAction2's
# tools/data/activitynet/label_map.txt (v1.2.0), which its wheel does not ship. For another
# dataset pass a file or a list and the model's size, e.g. --cfg-options
# model.num_action_classes=4 "train_dataloader.dataset.pipeline.2.classes=[a,b,c,d]"
classes = "{{ fileDirname }}/activitynet_label_map.txt"

train_pipeline = [
    dict(type="LoadLocalizationFeature"),
    dict(type="GenerateLocalizationLabels"),
    dict(type="GenerateSegmentLabels", classes=classes),
    dict(type="PackLocalizationInputs", keys=("gt_bbox", "gt_labels"), meta_keys=("video_name",)),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

work_dir = "./work_dirs/bmn_w_ac_2xb8-400x100-9e_activitynet-feature"
test_evaluator = dict(dump_config=dict(out=f"{work_dir}/results.json"))
val_evaluator = test_evaluator
