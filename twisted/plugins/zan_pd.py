from twisted.application.service import ServiceMaker

zan_pd = ServiceMaker("Zan placement driver", "zan.pd.tap", "Places namespace partitions on "
                      "Zan data nodes through etcd; one of several PDs leads", "zan-pd")
